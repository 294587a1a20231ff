#!/bin/bash
# The light install (onnxruntime, no torch) against CPU torch: render time of the sample town (docs/onnx.md).
#
#   benchmarks/onnx_light_bench.sh LIGHT_VENV TORCH_VENV MODEL.onnx [ROUNDS]
#
# LIGHT_VENV: made by qgis_plugin/geogan_qgis/installer.py --runtime onnx; TORCH_VENV: geogan + torch (+cpu) and
# onnxruntime; MODEL.onnx: from `geogan export-onnx` (its card beside it). Each round renders the whole sample town
# once per configuration (light/onnx, torch/torch, torch/onnx), interleaved; one line per render: the whole
# command's wall time, geogan's own "rendered N tiles in S s" and the 1-minute load average.
set -euo pipefail
light=$1 torch=$2 model=$3 rounds=${4:-5}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
for i in $(seq "$rounds"); do
  for cfg in "$light onnx" "$torch torch" "$torch onnx"; do
    set -- $cfg
    rm -rf "$out/render"
    start=$(date +%s.%N)
    line=$("$1/bin/geogan" render --runtime "$2" --model "$model" --out "$out/render" --no-progress 2>&1 |
           grep -o "rendered [0-9]* tiles in [0-9.]* s")
    end=$(date +%s.%N)
    echo "$i venv=$1 runtime=$2 wall=$(echo "$end - $start" | bc) $line load=$(cut -d' ' -f1 /proc/loadavg)"
  done
done
