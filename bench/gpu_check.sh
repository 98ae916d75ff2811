#!/usr/bin/env bash
# bench/gpu_check.py on the device machine (an NVIDIA GPU with PyTorch, timm and numpy
# installed, Python 3.12, no network), in one call.
#
#   bash bench/gpu_check.sh prepare   # here, once: this package's wheel and scipy-openblas32's
#                                     # for CPython 3.12 into .whl/ (ignored by git)
#   bash bench/gpu_check.sh run       # there: installs .whl/ into /tmp/site, runs the full
#                                     # check; JSON and log to $OUT (or bench/results/)
#
# The device tool's call: command "bash bench/gpu_check.sh run", carry [".whl"], and a
# timeout of about 300 s (the check takes about two minutes on an H200), which leaves room
# for one rerun within a session's device time. Then copy $OUT's gpu_check.json to
# bench/results/ and its figures to the README.
set -euo pipefail
cd "$(dirname "$0")/.."

# The engine's sources: the carried wheel's compiled engine must have been built from these.
sources_hash() {
  find cpp CMakeLists.txt pyproject.toml -type f | LC_ALL=C sort | xargs sha256sum | sha256sum
}

prepare() {
  local py="${PYTHON312:-}" candidate
  for candidate in python3.12 /root/.pyenv/versions/3.12.*/bin/python; do
    [ -n "$py" ] && break
    "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && py=$candidate
  done
  [ -n "$py" ] || { echo "prepare needs a CPython 3.12 (set PYTHON312)" >&2; exit 2; }
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
  rm -rf .whl && mkdir -p .whl
  "$py" -m pip wheel --quiet --no-deps -w .whl .
  sources_hash >.whl/SOURCES.sha256
  # The newest, as the wheel's isolated build used (pip wheel fetched its build needs).
  "$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl scipy-openblas32
  ls -l .whl
}

run() {
  local out="${OUT:-bench/results}"
  mkdir -p "$out"
  if [ "$(cat .whl/SOURCES.sha256)" != "$(sources_hash)" ]; then
    echo ".whl/ was built from other engine sources: run 'bash bench/gpu_check.sh prepare'" >&2
    exit 3
  fi
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  # The tree's Python over the wheel's: the engine is the same (checked above), and the
  # Python layer may have changed since the wheel was made.
  cp -r python/labelranker_fast/. /tmp/site/labelranker_fast/
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >"$out/nvidia-smi.csv" || true
  python3 bench/gpu_check.py --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log"
}

case "${1:-}" in
  prepare) prepare ;;
  run) run ;;
  *) echo "usage: bash bench/gpu_check.sh prepare|run" >&2; exit 2 ;;
esac
