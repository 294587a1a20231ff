#!/usr/bin/env bash
# Install QGIS (Debian's packages: QGIS 3.22 on bookworm) for the QGIS plugin tests.
# Idempotent: does nothing when /usr/bin/qgis_process.bin is already there.
# Needs root (or sudo). Tests run it headless:
#   QT_QPA_PLATFORM=offscreen /usr/bin/qgis_process.bin list
# (use qgis_process.bin: the qgis_process wrapper passes an option 3.22 rejects).
# python3-venv and python3-pip let the plugin's installer make its venv; xvfb (xvfb-run) gives
# the dialog screenshot tests a virtual display.
set -euo pipefail
if [ -x /usr/bin/qgis_process.bin ] && [ -x /usr/bin/xvfb-run ] && /usr/bin/python3 -c "import venv, ensurepip" 2>/dev/null; then
  echo "install_qgis: QGIS already installed ($(dpkg-query -W -f='${Version}' qgis 2>/dev/null || echo '?'))"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install_qgis: run as root (apt-get install needs it)" >&2; exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q qgis python3-qgis python3-venv python3-pip xvfb xauth
echo "install_qgis: installed QGIS $(dpkg-query -W -f='${Version}' qgis)"
