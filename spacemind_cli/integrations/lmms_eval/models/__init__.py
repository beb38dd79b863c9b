"""The layout `LMMS_EVAL_PLUGINS=spacemind_cli.integrations.lmms_eval` reads (lmms-eval before the
`lmms_eval.models` entry points): `AVAILABLE_MODELS` names `models.<name>.<class>`."""

AVAILABLE_MODELS = {"spacemind": "SpaceMind"}
