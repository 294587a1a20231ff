"""Plugin entry: registers the processing provider; a menu for installing dependencies."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication

from .provider import ICON, GeoganProvider
from .status import dep_status

MENU = "&geogan"


class GeoganPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self):  # noqa: N802 - QGIS's name (also called by qgis_process)
        if self.provider is None:
            self.provider = GeoganProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        from qgis.PyQt.QtGui import QIcon
        from qgis.PyQt.QtWidgets import QAction

        action = QAction(QIcon(str(ICON)), "Install dependencies...", self.iface.mainWindow())
        action.triggered.connect(self.show_installer)
        self.iface.addPluginToMenu(MENU, action)
        self.actions.append(action)
        st = dep_status()
        if not st.ok:
            self._offer_install(st.message)

    def _offer_install(self, message: str) -> None:
        from qgis.PyQt.QtWidgets import QPushButton

        bar = self.iface.messageBar()
        widget = bar.createMessage("geogan", "geogan's Python packages are not installed yet.")
        button = QPushButton("Install...", widget)
        button.clicked.connect(self.show_installer)
        widget.layout().addWidget(button)
        bar.pushWidget(widget, Qgis.Warning)

    def show_installer(self) -> None:
        from .installer_dialog import InstallerDialog

        dialog = InstallerDialog(self.iface.mainWindow(), on_done=self.refresh)
        dialog.exec_()

    def refresh(self) -> None:
        """Re-check dependencies (after installing) and reload the algorithms."""
        dep_status(refresh=True)
        if self.provider is not None:
            self.provider.refreshAlgorithms()

    def unload(self):
        for action in self.actions:
            self.iface.removePluginMenu(MENU, action)
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
