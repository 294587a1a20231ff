"""Plugins > geogan > Install dependencies...: a window around ``installer.py``.

The dialog runs the same script as the headless install, in a QProcess so QGIS
stays responsive, and shows its log. Install first asks the script for the plan
(``--plan --json``: which PyTorch build and how much will be downloaded), shows
the size and asks before downloading; then installs exactly that plan. It can
also point the plugin at an existing Python that already has geogan.
"""

from __future__ import annotations

import json

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment
from qgis.PyQt.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
)

from . import runner
from .deps import INSTALLER
from .installer import default_env_dir, default_geogan_spec
from .status import configured_python, dep_status, set_configured_python

LIGHT = "light"  # the runtime choice without PyTorch (installer.py --runtime onnx)
GPU_LABELS = [("auto", "PyTorch, automatic: CUDA only if an NVIDIA GPU is found (else CPU-only, about 200 MB)"),
              ("cpu", "PyTorch, CPU only (about 200 MB)"), ("cuda", "PyTorch with CUDA (NVIDIA GPU; about 3 GB)"),
              (LIGHT, "Light: no PyTorch (about 530 MB installed instead of 1.3 GB; default and ONNX models)")]


def status_text() -> str:
    """The dialog's own status line: what runs geogan now, or what Install will do (not a pointer to itself)."""
    st = dep_status()
    if st.ok:
        return st.message
    return (f"geogan is not installed for QGIS yet. Install makes a Python environment in {default_env_dir()} "
            "and installs geogan there with PyTorch, or light without it (the default model and models exported "
            "to ONNX), after showing the download size; QGIS's own Python is not changed.")


class InstallerDialog(QDialog):
    def __init__(self, parent=None, on_done=None):
        super().__init__(parent)
        self.on_done = on_done
        self.proc = None
        self.output = ""
        self.setWindowTitle("geogan: install dependencies")
        self.resize(760, 520)
        layout = QVBoxLayout(self)
        self.status = QLabel(status_text())
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        layout.addLayout(self._form())
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        layout.addWidget(self.log)
        buttons = QDialogButtonBox(QDialogButtonBox.Close)
        self.install_button = buttons.addButton("Install...", QDialogButtonBox.ActionRole)
        self.install_button.clicked.connect(self._plan)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _form(self) -> QFormLayout:
        form = QFormLayout()
        form.addRow("Install into", QLabel(str(default_env_dir())))
        self.geogan_spec = QLineEdit(default_geogan_spec())
        self.geogan_spec.setToolTip("pip spec: 'geogan==VERSION' (the default), a wheel file or a source folder")
        form.addRow("geogan", self.geogan_spec)
        self.gpu = QComboBox()
        for value, label in GPU_LABELS:
            self.gpu.addItem(label, value)
        self.gpu.setToolTip("What runs the generator. The light install renders the default model (a texture bank, "
                            "numpy only) and models exported with 'geogan export-onnx' (onnxruntime; give the "
                            "exported .json as the model file, or put the files in geogan's model folder); PyTorch "
                            "runs every model.")
        form.addRow("Runtime", self.gpu)
        existing = QHBoxLayout()
        self.python_path = QLineEdit(configured_python() or "")
        self.python_path.setPlaceholderText("or: a Python that already has geogan installed")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        use = QPushButton("Use")
        use.clicked.connect(self._use_existing)
        for widget in (self.python_path, browse, use):
            existing.addWidget(widget)
        form.addRow("Existing Python", existing)
        return form

    # ------------------------------------------------------------ actions
    def _browse(self):
        path, _ = QFileDialog.getOpenFileName(self, "Python executable with geogan")
        if path:
            self.python_path.setText(path)

    def _use_existing(self):
        set_configured_python(self.python_path.text().strip() or None)
        self._finish()

    def _base_args(self) -> list[str]:
        choice = self.gpu.currentData()
        runtime = ["--runtime", "onnx"] if choice == LIGHT else ["--gpu", choice]
        return [str(INSTALLER), "--geogan", self.geogan_spec.text().strip() or default_geogan_spec(), *runtime]

    def _plan(self):
        """Step 1: what would be downloaded (nothing is downloaded yet)."""
        self._start(self._base_args() + ["--plan", "--json"], self._planned)

    def _planned(self, code, _status=None):
        self.proc = None
        self.install_button.setEnabled(True)
        plan = _last_json(self.output).get("plan") if code == 0 else None
        if not plan:
            self.log.appendPlainText(f"could not plan the install (exit code {code}); see the log above")
            return
        question = (f"{plan['reason']}.\n\n{plan['summary']}.\n\nDownload and install into "
                    f"{default_env_dir()}?")
        if QMessageBox.question(self, "geogan: install dependencies", question) != QMessageBox.Yes:
            self.log.appendPlainText("not installed")
            return
        args = self._base_args()
        if plan.get("torch_version"):  # exactly the torch the plan showed
            args += ["--torch", f"torch=={plan['torch_version']}"]
            if plan.get("torch_index_url"):
                args += ["--torch-index-url", plan["torch_index_url"]]
        self._start(args, self._done)

    def _start(self, args: list[str], on_finished):
        if self.proc is not None:
            return
        env = QProcessEnvironment.systemEnvironment()
        for key in runner._STRIP_ENV:
            env.remove(key)
        self.output = ""
        self.proc = QProcess(self)
        self.proc.setProcessEnvironment(env)
        self.proc.setProcessChannelMode(QProcess.MergedChannels)
        self.proc.readyReadStandardOutput.connect(self._read)
        self.proc.finished.connect(on_finished)
        self.install_button.setEnabled(False)
        python = runner.base_python()
        self.log.appendPlainText(f"$ {python} {' '.join(args)}")
        self.proc.start(python, args)

    def _read(self):
        data = bytes(self.proc.readAllStandardOutput()).decode("utf-8", "replace")
        self.output += data
        self.log.appendPlainText(data.rstrip("\n"))

    def _done(self, code, _status=None):
        self.log.appendPlainText("finished" if code == 0 else f"failed (exit code {code})")
        self.proc = None
        self.install_button.setEnabled(True)
        self._finish()

    def _finish(self):
        if self.on_done is not None:
            self.on_done()
        else:
            dep_status(refresh=True)
        self.status.setText(status_text())


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return {}
    return {}
