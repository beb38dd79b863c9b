#!/usr/bin/env bash
# lmms-eval's `spacemind` model inside the real lmms-eval (tests/lmms_eval/check_harness.py), in an
# environment of its own (.venv-lmms, never the main .venv), as drift.sh tests transformers 5.17:
# lmms-eval pins things we pin differently. Tested: lmms-eval 0.7.3.
#   torch==2.13.0 in the same install   else torchvision pulls a CUDA torch over the CPU one
#   av<16, filelock<4                   lmms-eval 0.7.3's pins / its `filelock._api` import (the extra)
#   torchvision removed                 PyPI's build fails to import beside CPU torch, and transformers
#                                       then fails too; lmms-eval's vsibench path runs without it
#
# Usage: bash .ci/lmms_eval.sh [extra pytest args]   (LMMS_VENV=DIR for another environment folder)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${LMMS_VENV:-.venv-lmms}
LMMS_EVAL_VERSION=0.7.3
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_PROGRESS_BAR=off

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet torch==2.13.0 "lmms-eval==$LMMS_EVAL_VERSION" pytest -e '.[lmms-eval]'
"$VENV/bin/pip" uninstall --quiet --yes torchvision 2>/dev/null || true

"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
print("lmms_eval.sh: lmms-eval", md.version("lmms-eval"), "torch", md.version("torch"), "av", md.version("av"),
      "filelock", md.version("filelock"), "transformers", md.version("transformers"))
PY
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/lmms_eval/check_harness.py "$@"
