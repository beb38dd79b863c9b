"""From questions and scenes to work items: one scene each, with (some of) its questions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SceneError
from ..prompts import build_prompt
from ..questions import Question, QuestionSet
from ..scenes import SceneRef, discover_scenes, resolve_scene
from .records import QuestionRef, WorkItem

log = logging.getLogger(__name__)

# Questions of one scene in one work item: a scene with more is split, so that one item's answers
# (held until the item ends) and its time between progress reports stay bounded.
QUESTIONS_PER_ITEM = 64


@dataclass
class Plan:
    items: list[WorkItem] = field(default_factory=list)
    failures: list[tuple[Question, str]] = field(default_factory=list)  # (question, reason)
    scenes: int = 0


def _scene_for(root: Path, q: Question, memo: dict) -> SceneRef:
    spec = q.scene_spec
    images = spec.get("images")
    memo_key = (spec.get("scene"), spec.get("dataset"), spec.get("scene_name"), tuple(map(str, images or ())))
    if memo_key not in memo:
        try:
            memo[memo_key] = resolve_scene(root, **spec)
        except SceneError as exc:
            memo[memo_key] = exc
    found = memo[memo_key]
    if isinstance(found, SceneError):
        raise found
    return found


def plan_answer(root: str | Path, questions: list[Question], max_per_item: int = QUESTIONS_PER_ITEM) -> Plan:
    """Group questions by scene (first appearance order) and split long groups."""
    root = Path(root)
    plan = Plan()
    groups: dict[str, tuple[SceneRef, list[Question]]] = {}
    memo: dict = {}
    for q in questions:
        try:
            scene = _scene_for(root, q, memo)
        except SceneError as exc:
            plan.failures.append((q, exc.message))
            continue
        groups.setdefault(scene.key, (scene, []))[1].append(q)
    plan.scenes = len(groups)
    for scene, qs in groups.values():
        for start in range(0, len(qs), max(1, max_per_item)):
            chunk = qs[start : start + max_per_item]
            refs = [QuestionRef(q.index, q.qid, build_prompt(q.row)) for q in chunk]
            plan.items.append(WorkItem(f"{scene.key}#{start // max_per_item}", scene, refs))
    return plan


def plan_extract(scenes: list[SceneRef]) -> Plan:
    plan = Plan(scenes=len(scenes))
    for scene in scenes:
        plan.items.append(WorkItem(scene.key, scene))
    return plan


def scenes_of_questions(root: str | Path, qset: QuestionSet) -> tuple[list[SceneRef], list[tuple[Question, str]]]:
    """The distinct scenes a question file uses (for `extract --questions`)."""
    root = Path(root)
    seen: dict[str, SceneRef] = {}
    failures = []
    memo: dict = {}
    for q in qset.questions:
        try:
            scene = _scene_for(root, q, memo)
        except SceneError as exc:
            failures.append((q, exc.message))
            continue
        seen.setdefault(scene.key, scene)
    return list(seen.values()), failures


def expand_templates(root: str | Path, templates: QuestionSet) -> QuestionSet:
    """Annotation jobs: every template question asked of every scene under the root."""
    scenes = discover_scenes(root)
    out = QuestionSet(source=templates.source, problems=list(templates.problems))
    for scene in scenes:
        for t in templates.questions:
            row = dict(t.row)
            row.update(
                scene=scene.key,
                dataset=scene.dataset,
                scene_name=scene.scene_name,
                template_id=t.qid,
            )
            row.pop("scene_id", None)
            qid = f"{scene.key}::{t.qid}"
            out.questions.append(Question(len(out.questions), qid, row, templates.source, t.line))
    return out
