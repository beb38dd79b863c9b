"""The data that every scorer returns and every renderer reads.

A result is a flat, ordered list of :class:`Score` cells. A cell belongs to a *group* (a table row
within one run: ``""`` for VSI-Bench, ``"SPBench-SI"`` / ``"SPBench-MV"`` / ``"SPBench"`` for
SPBench, ``"EM@1"`` / ``"EM@R1"`` for SQA3D) and a *column* (the paper's column label). Each cell
also carries the benchmark's official key (``object_counting_MRA:.5:.95:.05``, ``em_overall``...)
so JSON can use the official names while tables use the paper's labels.

All values are percentages (0-100); ``None`` means "no question of that kind in the file".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

RESULT_SCHEMA = "spacemind-eval/1"
# The version of each benchmark's official scoring rules, written into every scores JSON
# ("rules") so that `--compare` shows when a saved run was scored under other rules. Bump it
# when a benchmark's official scoring changes. A JSON without it was written under version 1.
# SQA3D 2: LEO's empty-prediction rule (see sqa3d.py); version 1 is every JSON written before
# rules were recorded, most of them under the rule that is now the 'nonempty' variant.
SCORING_RULES = {"vsibench": 1, "sqa3d": 2, "spbench": 1}


@dataclass
class Score:
    group: str  # "" (single-row benchmarks), "SPBench-SI", "EM@1", ...
    column: str  # paper column label, e.g. "Obj. Count"
    key: str  # official metric key, e.g. "object_counting_MRA:.5:.95:.05"
    value: float | None  # percent, None when no question of this kind was present
    n: int = 0  # questions behind the value
    n_missing: int = 0  # of which had no prediction (scored as wrong)
    is_average: bool = False  # an average over categories (Avg., overall)

    @property
    def id(self) -> str:
        """Stable identifier used to line up runs, references and JSON: ``group/key`` or ``key``."""
        return f"{self.group}/{self.key}" if self.group else self.key

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "column": self.column,
            "key": self.key,
            "value": self.value,
            "n": self.n,
            "n_missing": self.n_missing,
            "is_average": self.is_average,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Score:
        value = d.get("value")
        return cls(
            group=str(d.get("group") or ""),
            column=str(d["column"]),
            key=str(d["key"]),
            value=None if value is None else float(value),
            n=int(d.get("n") or 0),
            n_missing=int(d.get("n_missing") or 0),
            is_average=bool(d.get("is_average", False)),
        )


@dataclass
class EvalResult:
    benchmark: str  # "vsibench" | "sqa3d" | "spbench"
    variant: str  # "official" or a "+"-joined list of variant names
    source: str  # the answers file (or the JSON a compared run was loaded from)
    label: str  # how this run is named in tables, legends and markdown
    scores: list[Score]
    official: dict[str, Any]  # the benchmark's own output dict (official keys, percent values)
    n_rows: int = 0  # rows read from the file
    n_scored: int = 0  # rows scored (including rows with no prediction, which score 0)
    n_missing_prediction: int = 0
    n_unlabelled: int = 0  # rows without ground truth: left unscored (a partly labelled file)
    unscored: dict[str, int] = field(default_factory=dict)  # question type -> rows not scored
    # question type -> {"value": percent, "n": rows, "n_missing": rows without prediction}
    per_type: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # decisions and warnings worth printing
    samples: list[dict[str, Any]] = field(default_factory=list)  # per-question scores
    input_format: str = ""  # "answers" | "lmms-eval" | "spatialladder"
    rules: int = 0  # SCORING_RULES' version it was scored under; 0: this spacemind's (filled in)

    def __post_init__(self) -> None:
        if not self.rules:
            self.rules = SCORING_RULES.get(self.benchmark, 1)

    def get(self, score_id: str) -> float | None:
        for s in self.scores:
            if s.id == score_id:
                return s.value
        return None

    @property
    def groups(self) -> list[str]:
        out: list[str] = []
        for s in self.scores:
            if s.group not in out:
                out.append(s.group)
        return out
