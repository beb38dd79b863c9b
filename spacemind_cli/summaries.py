"""What a finished job reports: one dataclass per job, returned by the library (`pipelines.answer`,
`extract`, `train`), printed by the CLI and read back by the report, by attribute. Each is written
as the job's summary file (`to_dict`, keys in field order); `from_dict` reads one back, missing
keys as None (a summary from an older run), unknown keys ignored.

They also read as mappings (`summary["failed"]`, `summary.get("cache")`), the summary file's keys,
for callers written against the JSON."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any


class _Summary:
    def to_dict(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: d.get(k) for k in names})

    def __getitem__(self, key: str) -> Any:
        if key not in {f.name for f in dataclasses.fields(self)}:  # type: ignore[arg-type]
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default


@dataclass
class AnswerSummary(_Summary):
    output: str | None = None
    errors_file: str | None = None  # set only when something failed
    executor: str | None = None
    route: str | None = None  # Ray: node (model tasks reading their own scenes) or dataset (Ray Data)
    questions: int = 0
    question_problems: int = 0  # rows of the question file that could not be read
    answered: int = 0  # now
    resumed: int = 0  # kept from an earlier run of the same settings
    other_settings_kept: int = 0  # earlier answers made with other settings: kept apart, never in this output
    failed: int = 0
    rows_written: int = 0
    scenes: int = 0
    items: int = 0
    cache: dict = field(default_factory=dict)  # cache status -> items
    elapsed_s: float = 0.0
    work_s: float = 0.0
    questions_per_s: float | None = None
    stage_s: dict = field(default_factory=dict)
    actors: list = field(default_factory=list)
    checkpoint_id: str | None = None
    run_key: str | None = None
    has_ground_truth: bool = False

    @property
    def not_answered(self) -> int:
        return (self.failed or 0) + (self.question_problems or 0)


@dataclass
class ExtractSummary(_Summary):
    cache: str | None = None
    executor: str | None = None
    route: str | None = None  # Ray: node (model tasks reading their own scenes) or dataset (Ray Data)
    scenes: int = 0
    encoded: int = 0
    cached: int = 0
    failed: int = 0
    question_problems: int = 0
    errors_file: str | None = None
    elapsed_s: float = 0.0
    scenes_per_s: float | None = None
    actors: list = field(default_factory=list)
    encoder_fingerprint: str | None = None


@dataclass
class TrainSummary(_Summary):
    output: str | None = None
    examples: int = 0
    scenes: int = 0
    scenes_encoded: int = 0
    scenes_cached: int = 0
    failed: int = 0
    errors_file: str | None = None
    examples_left_out: int = 0
    eval_questions: int = 0
    eval_questions_left_out: int = 0
    gradient_checkpointing: str | None = None  # on or off, and why
    steps: int | None = None
    resumed_from: int | None = None
    last: dict | None = None  # the last log record: loss, eval
    workers: int | None = None
    elapsed_s: float = 0.0
