#!/usr/bin/env bash
# The whole test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build.
#
#   bash tools/sanitize.sh                 # python -m pytest tests -q
#   bash tools/sanitize.sh tests/test_fuzz_bindings.py -q -x   # other pytest arguments
#
# - Creates .venv-asan (first run only; LRF_ASAN_VENV names another) with the build and
#   test dependencies, dask and torch + timm included (LRF_ASAN_TORCH=0 leaves torch out:
#   the torch tests then skip through importorskip).
# - Builds and installs the package there with g++ -fsanitize=address,undefined
#   -fno-sanitize-recover=undefined -fno-omit-frame-pointer -g (CMake option
#   LRF_SANITIZE, build directory build/asan); the normal build and the system Python's
#   install are not touched.
# - Runs pytest with the compiler's libasan (and libstdc++) preloaded (the interpreter is
#   not instrumented, and the ASan runtime must come first), Python's allocator switched to
#   malloc so ASan sees Python's buffers too, leak detection off (CPython keeps memory
#   until exit by design) and huge allocations failing as std::bad_alloc (MemoryError)
#   instead of aborting, as they do unsanitized (test_astronomical_sizes).
# Any ASan or UBSan finding stops the run with its report (file:line) and a non-zero exit.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${LRF_ASAN_VENV:-.venv-asan}
PYTHON=${PYTHON:-python3}
export CXX=${CXX:-g++}

if [ ! -x "$VENV/bin/python" ]; then
  echo "== creating $VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
# Build dependencies (the build runs without isolation, against these) and the test
# dependencies of pyproject's test, dask and timm extras (timm brings the registry's torch
# and a matching torchvision), so that no test skips. Quick when they are installed.
"$VENV/bin/python" -m pip install --quiet \
  "scikit-build-core>=0.10" "pybind11>=2.12" "cmeel-eigen>=3.4,<3.5" "scipy-openblas32>=0.3.28" \
  numpy tqdm pytest hypothesis scipy scikit-learn matplotlib pandas "dask[array]" distributed
if [ "${LRF_ASAN_TORCH:-1}" != 0 ]; then
  "$VENV/bin/python" -m pip install --quiet timm transformers
fi

echo "== building labelranker_fast with -fsanitize=address,undefined (build/asan)"
"$VENV/bin/python" -m pip install --quiet --no-build-isolation --no-deps --force-reinstall \
  -C cmake.define.LRF_SANITIZE=ON -C build-dir=build/asan .

LIBASAN=$("$CXX" -print-file-name=libasan.so)
if [ ! -e "$LIBASAN" ]; then
  echo "libasan not found ($CXX -print-file-name=libasan.so gave '$LIBASAN')" >&2
  exit 2
fi
LIBASAN=$(readlink -f "$LIBASAN")
# libstdc++ right after it: python is not linked with libstdc++, and without it loaded
# at start-up ASan cannot resolve the real __cxa_throw it intercepts ("CHECK failed:
# asan_interceptors.cpp: real___cxa_throw != 0" at the first C++ exception).
LIBSTDCXX=$(readlink -f "$("$CXX" -print-file-name=libstdc++.so)")

echo "== pytest under ASan/UBSan (LD_PRELOAD=$LIBASAN:$LIBSTDCXX)"
if [ $# -eq 0 ]; then
  set -- tests -q
fi
export LD_PRELOAD="$LIBASAN:$LIBSTDCXX${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:allocator_may_return_null=1:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:report_error_type=1:${UBSAN_OPTIONS:-}"
export PYTHONMALLOC=malloc
# --capture=sys: pytest captures Python's sys.stdout/stderr only, so the sanitizers'
# reports (written to file descriptor 2 just before the process aborts) reach the
# terminal instead of a capture file that dies with the process.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider --capture=sys "$@"
