"""`spacemind` for `LMMS_EVAL_PLUGINS`: the entry point's class."""

from ..model import SpaceMind

__all__ = ["SpaceMind"]
