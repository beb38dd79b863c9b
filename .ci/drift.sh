#!/usr/bin/env bash
# Run the model tests against transformers 5.17.0 (the oldest we support, the GPU machine's
# version) as well as the installed one.
#
# transformers 5.17.0 goes into .ci/tf517 (never into the venv) and that folder goes first on
# PYTHONPATH. Installed with --no-deps, plus only the dependencies whose installed versions it
# does not accept (checked below against every requirement of what we install):
#   huggingface_hub  5.17 requires >=1.5,<2.0; transformers 5.2x comes with hub 2.x
#   httpx, httpcore  imported by transformers 5.17 and hub 1.x; hub 2.x moved to httpx2
# tokenizers (<0.24,>=0.23.1), safetensors (>=0.8), numpy, regex, tqdm, typer, pyyaml: the
# installed versions satisfy 5.17 too.
#
# Usage: bash .ci/drift.sh [extra pytest args]   (from any folder; uses `python` on PATH or $PYTHON)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
TARGET=.ci/tf517
PINS=("transformers==5.17.0" "huggingface_hub>=1.5,<2" "httpx>=0.23,<1" "httpcore>=1,<2")
export PIP_DISABLE_PIP_VERSION_CHECK=1

have_517() {
  PYTHONPATH="$TARGET" "$PY" -c 'import sys, transformers; sys.exit(transformers.__version__ != "5.17.0")' >/dev/null 2>&1
}
if ! have_517; then
  rm -rf "$TARGET"
  "$PY" -m pip install --quiet --no-deps --target "$TARGET" "${PINS[@]}"
fi

# Every requirement of what went into $TARGET must be met by $TARGET + the environment.
PYTHONPATH="$TARGET" "$PY" - "$TARGET" <<'EOF'
import importlib.metadata as md
import sys
from pathlib import Path

from packaging.requirements import Requirement

target = Path(sys.argv[1]).resolve()
problems = []
for dist in md.distributions(path=[str(target)]):
    for line in dist.requires or []:
        req = Requirement(line)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        try:
            have = md.version(req.name)  # first on sys.path: $TARGET, then the venv
        except md.PackageNotFoundError:
            problems.append(f"{dist.metadata['Name']} needs {req}: not installed")
            continue
        if req.specifier and not req.specifier.contains(have, prereleases=True):
            problems.append(f"{dist.metadata['Name']} needs {req}: {have} installed")
if problems:
    sys.exit("drift.sh: unmet dependencies for transformers 5.17:\n  " + "\n  ".join(problems))
EOF

PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PY" - <<'EOF'
import huggingface_hub, tokenizers, transformers
print(f"drift.sh: transformers {transformers.__version__} from {transformers.__file__.rsplit('/', 2)[0]}, "
      f"huggingface_hub {huggingface_hub.__version__}, tokenizers {tokenizers.__version__}")
assert transformers.__version__ == "5.17.0", transformers.__version__
EOF

PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m pytest -q -p no:cacheprovider \
  tests/test_model.py tests/test_generation.py tests/test_transformers_drift.py tests/test_checkpoint_tools.py \
  tests/test_internvl_loading.py tests/test_vggt_precision.py \
  tests/test_prefix_attention.py tests/test_packing.py tests/test_train_schedule.py \
  tests/test_internvl_convert.py tests/test_hf_shapes.py tests/test_load_memory.py tests/test_lora_answering.py \
  tests/test_random_checkpoints.py \
  "tests/test_train.py::test_eval_questions_are_scored_during_training" "$@"
