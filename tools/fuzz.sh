#!/usr/bin/env bash
# Long fuzzing run of the bindings and the public API (tests/test_fuzz_bindings.py).
#
#   bash tools/fuzz.sh [EXAMPLES_PER_TEST] [pytest arguments]
#
# EXAMPLES_PER_TEST defaults to 13000: the module's 8 fuzz tests then generate about
# 105,000 inputs and 500,000 calls into the bindings (the stateful test counts one input
# per generated call sequence; the summary printed at the end gives the inputs and calls
# of every test). Examples are small (at most 40 rows x 12 features, now and then
# 4,097-9,000 rows), so this takes about 14 minutes on two cores.
# Run it with the sanitizer build instead:
#   LRF_FUZZ_EXAMPLES=2000 bash tools/sanitize.sh tests/test_fuzz_bindings.py -q
set -euo pipefail
cd "$(dirname "$0")/.."
EXAMPLES=${1:-13000}
shift || true
export LRF_FUZZ_EXAMPLES=$EXAMPLES
exec "${PYTHON:-python}" -m pytest tests/test_fuzz_bindings.py -q -p no:cacheprovider "$@"
