#!/usr/bin/env bash
# Installs mpcrt (editable) with its test, example, DP-SGD accountant and plot extras.
# Where no torch is present, installs the CPU build of torch 2.13.0 first: a bare
# `torch` requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "$PY" -m pip install -q torch==2.13.0
fi
"$PY" -m pip install -q -e ".[dev,examples,dp,plots]"
