"""The records a job's stages pass along, one type per hop, each with one `to_row` / `from_row`:

    WorkItem      planning -> load stage      a scene and (some of) its questions
    LoadedItem    load stage -> model stage   what loading found (LoadInfo) + both encoders' uint8 frames
    ItemResult    model stage -> the job      answers (or encode status), cache status, timings, actor

In process (the local executor) they travel as they are. Through Ray Data a row is a dict of
columns: the small, nested parts as one JSON string each (Arrow cannot hold dicts whose keys vary
from row to row), frames as numpy arrays.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import error_class
from ..models.answering import Answer, Failure
from ..models.preprocess import PreparedClip
from ..scenes import SceneRef


@dataclass(frozen=True)
class QuestionRef:
    index: int  # position in the question file: where the answer goes
    qid: str
    prompt: str

    def __str__(self) -> str:  # how failures name the question
        return self.qid


def scene_to_dict(scene: SceneRef) -> dict:
    return {"key": scene.key, "path": str(scene.path), "kind": scene.kind, "dataset": scene.dataset,
            "scene_name": scene.scene_name, "images": list(scene.images)}


def scene_from_dict(d: dict) -> SceneRef:
    return SceneRef(key=d["key"], path=Path(d["path"]), kind=d["kind"], dataset=d.get("dataset"),
                    scene_name=d["scene_name"], images=tuple(d.get("images") or ()))


@dataclass
class WorkItem:
    item_id: str
    scene: SceneRef
    questions: list[QuestionRef] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "scene": scene_to_dict(self.scene),
                "questions": [asdict(q) for q in self.questions]}

    @classmethod
    def from_dict(cls, d: dict) -> WorkItem:
        return cls(d["item_id"], scene_from_dict(d["scene"]), [QuestionRef(**q) for q in d["questions"]])

    def to_row(self) -> dict:
        return {"item": json.dumps(self.to_dict())}

    @classmethod
    def from_row(cls, row: dict) -> WorkItem:
        return cls.from_dict(json.loads(row["item"]))


@dataclass
class LoadInfo:
    """What the load stage found out about a scene."""

    status: str  # ok (frames read) | cached (features in the cache) | failed
    key: str | None = None  # the feature cache key
    scene_digest: str | None = None
    error: str | None = None
    meta: dict | None = None  # clip metadata (frame indices, sizes, notes): what the cache stores
    refresh: str | None = None  # why an existing cache entry is being replaced
    timing: dict[str, float] = field(default_factory=dict)


_NO_FRAMES = np.zeros((0, 0, 0, 3), dtype=np.uint8)


@dataclass
class LoadedItem:
    item: WorkItem
    info: LoadInfo
    frames: PreparedClip | None = None  # both encoders' uint8 frames; None when cached or failed

    def to_row(self) -> dict:
        return {
            "item": json.dumps(self.item.to_dict()),
            "load_info": json.dumps(asdict(self.info)),
            "vggt_frames": self.frames.vggt if self.frames is not None else _NO_FRAMES,
            "vit_frames": self.frames.vit if self.frames is not None else _NO_FRAMES,
        }

    @classmethod
    def from_row(cls, row: dict) -> LoadedItem:
        vggt, vit = np.asarray(row["vggt_frames"]), np.asarray(row["vit_frames"])
        frames = PreparedClip(vggt=vggt, vit=vit) if vggt.size else None
        return cls(WorkItem.from_row(row), LoadInfo(**json.loads(row["load_info"])), frames)


@dataclass
class ActorInfo:
    """Which worker produced a result, for the summary."""

    node: str | None = None
    pid: int | None = None
    device: str | None = None
    threads: int | None = None  # torch threads (CPU workers)
    peak_memory: int | None = None  # bytes (GPU workers)
    load_s: float | None = None  # model load time


@dataclass
class ItemResult:
    item_id: str
    status: str  # ok | cached | failed
    error: str | None = None
    # A failure that must stop the whole job (disk full while extracting, a checkpoint that
    # cannot load): the name of its SpacemindError class, raised by the driver with `error`.
    stop_job: str | None = None
    key: str | None = None
    meta: dict | None = None
    cache: str | None = None  # hit | miss | refreshed | write-failed | none
    timing: dict[str, float] = field(default_factory=dict)
    answers: list[Answer] = field(default_factory=list)  # Answer.key: the question's index
    question_errors: list[Failure] = field(default_factory=list)  # Failure.key: the question's index
    actor: ActorInfo = field(default_factory=ActorInfo)
    started: float | None = None  # when the model stage began the item, after any model load (epoch seconds)

    def raise_if_job_stops(self) -> None:
        """On the driver: end the job when this result says no other item can get past its failure."""
        if self.stop_job:
            raise error_class(self.stop_job)(self.error or "a worker failed")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ItemResult:
        d = dict(d)
        d["answers"] = [Answer(**a) for a in d.get("answers") or ()]
        d["question_errors"] = [Failure(**f) for f in d.get("question_errors") or ()]
        d["actor"] = ActorInfo(**(d.get("actor") or {}))
        return cls(**d)

    def to_row(self) -> dict:
        return {"result": json.dumps(self.to_dict())}

    @classmethod
    def from_row(cls, row: dict) -> ItemResult:
        return cls.from_dict(json.loads(row["result"]))
