#!/usr/bin/env bash
# Set up geogan in ./.venv (idempotent).
#   bash scripts/setup.sh         runtime: geogan + its dependencies, and PyTorch
#   bash scripts/setup.sh --dev   plus test tools, and QGIS from Debian when run as root (plugin tests)
# Torch: installs torch==2.13.0 (CPU build on this project's machines) first when no torch is importable,
# because a bare "torch" requirement pulls a multi-GB CUDA build. Override with GEOGAN_TORCH_SPEC.
# PyTorch is optional for geogan itself (the 'torch' extra; pip install geogan renders the default texture bank
# without it); the neural models and the tests need it, so both setups install it (the torch install below;
# the dev extra lists torch too).
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[ "${1:-}" = "--dev" ] && DEV=1
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python
$VPY -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
if ! $VPY -c "import torch" 2>/dev/null; then
  echo "setup: installing ${GEOGAN_TORCH_SPEC:-torch==2.13.0}"
  $VPY -m pip install -q "${GEOGAN_TORCH_SPEC:-torch==2.13.0}" 2>&1 | grep -v "is ignored" || true
fi
if [ $DEV = 1 ]; then
  $VPY -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
  if [ "$(id -u)" = 0 ] && [ -f scripts/install_qgis.sh ]; then
    bash scripts/install_qgis.sh
  fi
  bash scripts/install_node_tools.sh  # the Khronos glTF validator for the 3D export tests
  bash scripts/install_browser.sh  # Debian's chromium for the geogan serve viewer test
else
  $VPY -m pip install -q -e . 2>&1 | grep -v "is ignored" || true
fi
$VPY -c "import geogan, geogan.api, torch; print(f'setup: geogan {geogan.__version__}, torch {torch.__version__} in .venv')"
