#!/usr/bin/env bash
# Checks that python/labelranker_fast/_core.pyi is what pybind11-stubgen makes of the built
# engine: regenerates the stub into a temporary folder and diffs it against the checked-in
# one. Exit 0 when they match; 1, with the diff printed, when the checked-in stub is out of
# date (rebuild, then run with --update to rewrite it); 2 when the stub cannot be generated.
#
#   bash tools/check_stub.sh            # check (CI)
#   bash tools/check_stub.sh --update   # rewrite the checked-in stub
#
# Needs the package built and installed (pip install -e .) and pybind11-stubgen; PYTHON
# picks the interpreter (default: python). The stub names no paths, so where the package
# is installed does not matter; it does depend on the pybind11 and pybind11-stubgen
# versions (generated with pybind11 3.1.0 and pybind11-stubgen 3.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
STUB=python/labelranker_fast/_core.pyi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Run from the temporary folder, so that the module comes from the installed package (an
# editable install's finder) and nothing is written into the tree.
if ! (cd "$tmp" && "$PYTHON" -m pybind11_stubgen --exit-code -o out labelranker_fast._core \
        > log 2>&1); then
  cat "$tmp/log" >&2
  echo "check_stub: pybind11-stubgen failed on labelranker_fast._core" >&2
  exit 2
fi
generated="$tmp/out/labelranker_fast/_core.pyi"

if [[ "${1:-}" == "--update" ]]; then
  cp "$generated" "$STUB"
  echo "check_stub: wrote $STUB"
  exit 0
fi
if ! diff -u --label "$STUB (checked in)" --label "$STUB (generated)" "$STUB" "$generated"; then
  echo "check_stub: $STUB is out of date; rebuild and run: bash tools/check_stub.sh --update" >&2
  exit 1
fi
echo "check_stub: $STUB is up to date"
