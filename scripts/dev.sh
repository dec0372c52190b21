#!/usr/bin/env bash
# Set up a local virtual environment and run the demo or the test suite.
#   bash scripts/dev.sh demo   -> .venv + `videosdgx generate --demo` (tiny random weights, writes demo.mp4)
#   bash scripts/dev.sh test   -> .venv + the full test suite (CPU, no network, no downloads)
# TORCH_SPEC picks the torch build to install when .venv has none (default: the CPU-friendly pinned release).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install -q --upgrade pip >/dev/null
if ! "$PY" -c "import torch" 2>/dev/null; then
  # shellcheck disable=SC2086 # TORCH_SPEC may carry pip options, e.g. "torch --index-url URL"
  "$PY" -m pip install -q ${TORCH_SPEC:-torch==2.13.0}
fi
case "${1:-test}" in
  demo)
    "$PY" -m pip install -q -e .
    shift
    "$VENV/bin/videosdgx" generate --demo --model wan2.1-t2v-1.3b --prompt "a red fox running through snow" --out demo.mp4 "$@"
    ;;
  test)
    "$PY" -m pip install -q -e ".[test]"
    shift || true
    set +e
    "$PY" -m pytest -q -p no:cacheprovider "$@"
    status=$?
    set -e
    if [ "$status" -eq 5 ]; then
      echo "ERROR: pytest collected no tests; refusing to report success." >&2
      exit 1
    fi
    exit "$status"
    ;;
  *)
    echo "usage: bash scripts/dev.sh demo|test [extra args]" >&2
    exit 64
    ;;
esac
