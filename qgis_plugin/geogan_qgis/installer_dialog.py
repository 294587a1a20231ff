"""Plugins > geogan > Install dependencies...: a window around ``installer.py``.

The dialog runs the same script as the headless install (in a QProcess, so
QGIS stays responsive) and shows its log; or points the plugin at an
existing Python that already has geogan.
"""

from __future__ import annotations

import sys

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from . import runner
from .deps import INSTALLER
from .installer import default_env_dir, default_geogan_spec
from .status import configured_python, dep_status, set_configured_python

CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


class InstallerDialog(QDialog):
    def __init__(self, parent=None, on_done=None):
        super().__init__(parent)
        self.on_done = on_done
        self.proc = None
        self.setWindowTitle("geogan: install dependencies")
        self.resize(760, 520)
        layout = QVBoxLayout(self)

        self.status = QLabel(dep_status().message)
        self.status.setWordWrap(True)
        layout.addWidget(self.status)

        form = QFormLayout()
        form.addRow("Install into", QLabel(str(default_env_dir())))
        self.geogan_spec = QLineEdit(default_geogan_spec())
        self.geogan_spec.setToolTip("pip spec: the bundled wheel, another wheel file, a source folder "
                                    "or 'geogan==VERSION'")
        form.addRow("geogan", self.geogan_spec)
        self.torch_spec = QLineEdit("torch")
        form.addRow("PyTorch", self.torch_spec)
        self.cpu_torch = QCheckBox("CPU-only PyTorch (much smaller download; no GPU)")
        self.cpu_torch.setChecked(sys.platform != "darwin")
        self.cpu_torch.setVisible(sys.platform != "darwin")
        form.addRow("", self.cpu_torch)
        existing = QHBoxLayout()
        self.python_path = QLineEdit(configured_python() or "")
        self.python_path.setPlaceholderText("or: a Python that already has geogan installed")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        use = QPushButton("Use")
        use.clicked.connect(self._use_existing)
        existing.addWidget(self.python_path)
        existing.addWidget(browse)
        existing.addWidget(use)
        form.addRow("Existing Python", existing)
        layout.addLayout(form)

        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        layout.addWidget(self.log)

        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.install_button = buttons.addButton("Install", QDialogButtonBox.ActionRole)
        self.install_button.clicked.connect(self._install)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    # ------------------------------------------------------------ actions
    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Python executable with geogan")
        if path:
            self.python_path.setText(path)

    def _use_existing(self):
        set_configured_python(self.python_path.text().strip() or None)
        self._finish()

    def _install(self):
        if self.proc is not None:
            return
        args = [str(INSTALLER), "--geogan", self.geogan_spec.text().strip() or default_geogan_spec(),
                "--torch", self.torch_spec.text().strip() or "torch"]
        if self.cpu_torch.isVisible() and self.cpu_torch.isChecked():
            args += ["--torch-index-url", CPU_TORCH_INDEX]
        env = QProcessEnvironment.systemEnvironment()
        for key in runner._STRIP_ENV:
            env.remove(key)
        self.proc = QProcess(self)
        self.proc.setProcessEnvironment(env)
        self.proc.setProcessChannelMode(QProcess.MergedChannels)
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(self._done)
        self.install_button.setEnabled(False)
        python = runner.base_python()
        self.log.appendPlainText(f"$ {python} {' '.join(args)}")
        self.proc.start(python, args)

    def _read(self):
        data = bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace")
        self.log.appendPlainText(data.rstrip("\n"))

    def _done(self, code, _status=None):
        self.log.appendPlainText("finished" if code == 0 else f"failed (exit code {code})")
        self.proc = None
        self.install_button.setEnabled(True)
        self._finish()

    def _finish(self):
        if self.on_done is not None:
            self.on_done()
        self.status.setText(dep_status(refresh=self.on_done is None).message)
