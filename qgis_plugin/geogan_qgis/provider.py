"""The "geogan" processing provider."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .status import dep_status

ICON = Path(__file__).with_name("icon.svg")


class GeoganProvider(QgsProcessingProvider):
    """Algorithms are always listed (with their help); they run only when
    geogan's Python is ready: otherwise ``canBeActivated()`` is False and each
    algorithm's ``canExecute()`` returns the one-line install instruction."""

    def id(self):  # noqa: A003 - QGIS's name
        return "geogan"

    def name(self):
        return "geogan"

    def longName(self):  # noqa: N802
        st = dep_status()
        return "geogan (synthetic aerial imagery)" + ("" if st.ok else " - not installed")

    def icon(self):
        return QIcon(str(ICON))

    def svgIconPath(self):  # noqa: N802
        return str(ICON)

    def load(self):
        dep_status()
        self.refreshAlgorithms()
        return True

    def loadAlgorithms(self):  # noqa: N802
        from .algorithms import all_algorithms

        for alg in all_algorithms():
            self.addAlgorithm(alg)

    def canBeActivated(self):  # noqa: N802
        return dep_status().ok

    def warningMessage(self):  # noqa: N802
        st = dep_status()
        return "" if st.ok else st.message

    def versionInfo(self):  # noqa: N802
        st = dep_status()
        return st.versions.get("geogan", "") if st.ok else ""

    def supportedOutputRasterLayerExtensions(self):  # noqa: N802
        return ["tif"]

    def defaultRasterFileExtension(self):  # noqa: N802
        return "tif"
