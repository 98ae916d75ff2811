#!/usr/bin/env bash
# XLA smoke test on the CPU: its own environment with torch 2.9.0 + torch_xla 2.9.0 (the
# pair torch_xla requires; about 2 minutes and 7 GB from the registry), timm with the
# matching torchvision 0.24.0, and this package; then bench/xla_cpu_smoke.py on
# PJRT_DEVICE=CPU. Usage: bash bench/xla_cpu_smoke.sh [venv dir, default .venv-xla]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-xla}"
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  # torchvision unpinned would pull the newest torch and break torch_xla.
  "$VENV/bin/pip" install --quiet "torch==2.9.0" "torch_xla==2.9.0" "torchvision==0.24.0" timm scikit-learn
fi
"$VENV/bin/pip" install --quiet .
PJRT_DEVICE=CPU "$VENV/bin/python" bench/xla_cpu_smoke.py
