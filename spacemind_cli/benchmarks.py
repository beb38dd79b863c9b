"""VSI-Bench's question types, in the official scorer's order (thinking-in-space `vsibench`):
one list that the prompts (`prompts.py`) and the scorer (`eval/vsibench.py`) both read, so the
text asked and the score given agree on what is numeric and what is multiple choice."""

from __future__ import annotations

VSIBENCH_MCA_TYPES = (
    "object_rel_direction_easy",
    "object_rel_direction_medium",
    "object_rel_direction_hard",
    "object_rel_distance",
    "route_planning",
    "obj_appearance_order",
)
VSIBENCH_NA_TYPES = (
    "object_abs_distance",
    "object_counting",
    "object_size_estimation",
    "room_size_estimation",
)
