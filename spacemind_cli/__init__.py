"""spacemind: batch spatial-reasoning QA over 3D scenes with SpaceMind (arXiv 2511.23075).

The library's API, at the root (imported on first use, so `import spacemind_cli` stays light and
never imports Ray or torch):

    answer(scenes, questions=..., output=..., checkpoint=...)   `spacemind answer`
    extract(scenes, cache=..., checkpoint=...)                  `spacemind extract`
    train(scenes, questions=..., output=..., checkpoint=...)    `spacemind train`
    evaluate(answers)                                           `spacemind eval`
    SpaceMind.from_pretrained(checkpoint)                       the model itself
    RunOptions, TrainConfig                                     the jobs' options, hyperparameters

See `spacemind_cli.api` for each function's arguments.
"""

from .version import __version__

__all__ = ["RunOptions", "SpaceMind", "TrainConfig", "__version__", "answer", "evaluate", "extract", "train"]

_WHERE = {
    "answer": "api", "extract": "api", "train": "api", "evaluate": "api",
    "SpaceMind": "models.spacemind", "RunOptions": "jobs.settings", "TrainConfig": "training.config",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_WHERE])
