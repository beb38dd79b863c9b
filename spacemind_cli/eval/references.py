"""Published numbers to overlay on tables and plots. Every entry names its source.

Values are percentages keyed by the same ids as :class:`~spacemind_cli.eval.result.Score.id`
(``group/key`` or ``key``). Add a baseline only with a source you have read.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reference:
    label: str
    benchmark: str
    source: str
    values: dict[str, float] = field(default_factory=dict)
    note: str = ""


_VSI_MRA = "MRA:.5:.95:.05"

REFERENCES: list[Reference] = [
    # SpaceMind paper (arXiv:2511.23075, "SpaceMind: Camera-Guided Modality Fusion for Spatial
    # Reasoning in Vision-Language Models"), VSI-Bench table, as given in the project's issue.
    Reference(
        label="SpaceMind (paper)",
        benchmark="vsibench",
        source="arXiv:2511.23075",
        values={
            "overall": 70.2,
            f"object_counting_{_VSI_MRA}": 73.9,
            f"object_abs_distance_{_VSI_MRA}": 61.5,
            f"object_size_estimation_{_VSI_MRA}": 77.6,
            f"room_size_estimation_{_VSI_MRA}": 74.8,
            "object_rel_distance_accuracy": 67.7,
            "object_rel_direction_accuracy": 88.6,
            "route_planning_accuracy": 46.9,
            "obj_appearance_order_accuracy": 70.7,
        },
    ),
    # SpaceMind paper (arXiv:2511.23075), SQA3D: EM@1 61.1, EM@R1 63.8.
    Reference(
        label="SpaceMind (paper)",
        benchmark="sqa3d",
        source="arXiv:2511.23075",
        values={"EM@1/em_overall": 61.1, "EM@R1/em_refined_overall": 63.8},
    ),
    # SpaceMind paper (arXiv:2511.23075), SPBench overall 67.3. The paper's definition of this
    # single number is not restated here; we line it up with our labelled "SPBench overall*"
    # (mean of the SI and MV averages).
    Reference(
        label="SpaceMind (paper)",
        benchmark="spbench",
        source="arXiv:2511.23075",
        values={"SPBench/overall_unofficial": 67.3},
        note="paper's SPBench overall; its definition may differ from our SPBench overall*",
    ),
    # SpatialLadder-3B, from the SpatialLadder project page (github.com/ZJU-REAL/SpatialLadder,
    # docs/index.html): "70.2% on SPBench-SI and 70.9% on SPBench-MV".
    Reference(
        label="SpatialLadder-3B (project page)",
        benchmark="spbench",
        source="github.com/ZJU-REAL/SpatialLadder docs/index.html",
        values={"SPBench-SI/overall_accuracy": 70.2, "SPBench-MV/overall_accuracy": 70.9},
    ),
]


def references_for(benchmark: str) -> list[Reference]:
    return [r for r in REFERENCES if r.benchmark == benchmark]
