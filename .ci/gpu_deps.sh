#!/usr/bin/env bash
# The packages the GPU benchmark's train section needs beyond torch + transformers, for a device
# machine without internet: peft, accelerate (peft imports it) and psutil (accelerate imports it;
# an abi3 wheel, any CPython 3 on x86_64 Linux). Installed with --no-deps into .ci/gpu_deps (ignored
# by git, ~12 MB), carried to the device (`carry: [".ci/gpu_deps"]`) and put on PYTHONPATH only
# where the machine lacks them:
#
#   python -c 'import peft, accelerate' 2>/dev/null || export PYTHONPATH=.ci/gpu_deps${PYTHONPATH:+:$PYTHONPATH}
#
# The pins are the versions tests/ run with (peft 0.21.2 works with transformers 5.17: .ci/drift.sh).
# Usage: bash .ci/gpu_deps.sh   (from any folder; uses `python` on PATH or $PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TARGET=.ci/gpu_deps
export PIP_DISABLE_PIP_VERSION_CHECK=1
rm -rf "$TARGET"
"$PY" -m pip install --quiet --no-deps --only-binary :all: --platform manylinux2014_x86_64 --target "$TARGET" \
  "peft==0.21.2" "accelerate==1.15.0" "psutil>=5.9"
PYTHONPATH="$TARGET" "$PY" -c 'import peft, accelerate, psutil; print("gpu_deps:", peft.__version__, accelerate.__version__, psutil.__version__)'
du -sh "$TARGET"
