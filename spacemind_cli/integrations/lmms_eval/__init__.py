"""SpaceMind as an lmms-eval model: `lmms-eval --model spacemind --model_args checkpoint=CKPT`.

    __init__.py  `manifest()`: the `lmms_eval.models` entry point (pyproject), registry v2
    requests.py  lmms-eval's chat requests read without lmms-eval: visual, prompt, gen_kwargs, groups
    model.py     the model class (imports lmms-eval): one encode and one prefill per video
    models/      the `LMMS_EVAL_PLUGINS=spacemind_cli.integrations.lmms_eval` layout older releases read

Nothing here imports lmms-eval at module level: lmms-eval loads its entry points while
`lmms_eval.models` is still being imported, and an entry point that imported it back would be a
circular import, which lmms-eval swallows with one warning, dropping every entry-point model.
"""

from __future__ import annotations

MODEL_ID = "spacemind"
CHAT_CLASS_PATH = "spacemind_cli.integrations.lmms_eval.model.SpaceMind"


def manifest():
    """The entry point's payload: lmms-eval calls it once its registry module is loaded."""
    from lmms_eval.models.registry_v2 import ModelManifest

    return ModelManifest(model_id=MODEL_ID, chat_class_path=CHAT_CLASS_PATH)
