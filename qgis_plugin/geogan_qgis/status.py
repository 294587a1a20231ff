"""The plugin's cached dependency status (QGIS side of ``deps.py``)."""

from __future__ import annotations

import sys

from qgis.core import Qgis, QgsMessageLog, QgsSettings

from . import deps

SETTING_PYTHON = "geogan/python"
_status: deps.DepStatus | None = None


def configured_python() -> str | None:
    value = QgsSettings().value(SETTING_PYTHON, "", type=str)
    return value.strip() or None


def set_configured_python(python: str | None) -> None:
    if python:
        QgsSettings().setValue(SETTING_PYTHON, python)
    else:
        QgsSettings().remove(SETTING_PYTHON)


def dep_status(refresh: bool = False) -> deps.DepStatus:
    """Where geogan runs, or why it cannot; checked once per session unless ``refresh``."""
    global _status
    if _status is None or refresh:
        _status = deps.check(configured_python())
        level = Qgis.Info if _status.ok else Qgis.Warning
        QgsMessageLog.logMessage(_status.message, "geogan", level)
        if not _status.ok and not _has_gui():
            # qgis_process and other headless runs: say it where people look
            print(f"geogan: {_status.message}", file=sys.stderr)
    return _status


def _has_gui() -> bool:
    try:
        from qgis.utils import iface
    except ImportError:
        return False
    return iface is not None
