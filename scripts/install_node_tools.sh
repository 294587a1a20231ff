#!/usr/bin/env bash
# Install the Khronos glTF validator (npm package gltf-validator) into .tools/node for the 3D export tests.
# Idempotent. Installs Debian's nodejs + npm first when they are missing and we are root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -f .tools/node/node_modules/gltf-validator/package.json ]; then
  echo "install_node_tools: gltf-validator already installed"; exit 0
fi
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q nodejs npm
  else
    echo "install_node_tools: npm missing (install nodejs + npm); the glTF validator test will be skipped" >&2
    exit 0
  fi
fi
mkdir -p .tools/node
npm install --silent --no-audit --no-fund --prefix .tools/node gltf-validator@2.0.0-dev.3.10
echo "install_node_tools: installed gltf-validator into .tools/node"
