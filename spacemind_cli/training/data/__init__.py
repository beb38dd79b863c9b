"""Training data for ``spacemind train``: files users already have, read into examples whose
prompts are exactly those ``spacemind answer`` asks and whose targets are what the evaluated
model should say. See :mod:`.examples` (formats, what the public datasets hold), :mod:`.llava`,
:mod:`.sqa3d` and :mod:`.targets`."""

from .examples import (
    FORMATS,
    TrainingExample,
    TrainingOptions,
    TrainingSet,
    read_training_file,
    write_question_file,
)
from .llava import QUESTION_TYPE_ALIASES
from .targets import TargetError, target_text

__all__ = [
    "FORMATS",
    "QUESTION_TYPE_ALIASES",
    "TargetError",
    "TrainingExample",
    "TrainingOptions",
    "TrainingSet",
    "read_training_file",
    "target_text",
    "write_question_file",
]
