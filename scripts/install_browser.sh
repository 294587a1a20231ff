#!/usr/bin/env bash
# Install Debian's chromium for the headless browser test of `geogan serve`'s viewer (tests/test_serve.py).
# Idempotent; needs root (apt-get). Without root or apt the test is skipped, so this never fails the setup.
set -euo pipefail
if command -v chromium >/dev/null || command -v chromium-browser >/dev/null; then
  echo "install_browser: chromium already installed"; exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install_browser: not root or no apt-get; the headless browser test will be skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q && apt-get install -y -q chromium
echo "install_browser: installed $(chromium --version 2>/dev/null || echo chromium)"
