"""A worker's training steps with their features read: the step's packs, this worker's passes
over them, and each scene they need read from the feature cache once per step, ahead on a
background thread, so the next step's features load while this one computes.

    with StepFeed(plan, range(start, plan.total_steps), rank, world, read) as feed:
        for data in feed:              # StepData, in step order
            for p in data.passes:      # this worker's packs, whole; fillers carry one question
                enc = data.features[p.pack.scene]
            data.wait_s                # how long the loop waited for this step's features

`ahead` steps are read before the loop asks for them (1: the next one; 0: read in the loop, no
thread). The batches are the same either way; an error in the reader (a missing or corrupt cache
entry) is raised in the loop as it was raised, when the loop reaches that step; `close` (or leaving
the `with`, by an error or Ctrl-C) stops the reader and waits for it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .schedule import Pack, StepPlan, worker_share

READ_AHEAD_STEPS = 1  # steps read before the loop needs them: features of 2 steps in memory at most


@dataclass(frozen=True)
class Pass:
    pack: Pack
    filler: bool  # a pass with zero loss weight, so every worker runs as many passes (collectives line up)


@dataclass
class StepData:
    index: int  # the global step
    packs: list[Pack]  # the whole step's packs (every worker's)
    passes: list[Pass]  # this worker's, in order
    features: dict[str, Any] = field(default_factory=dict)  # scene -> read(scene), each scene read once
    read_s: float = 0.0  # spent reading them
    wait_s: float = 0.0  # of which the loop waited for


def cache_reader(cache, fingerprint: str, device: str = "cpu", has_vggt: bool = True) -> Callable[[str], Any]:
    """key -> the scene's EncoderOutputs from the feature cache (CacheError when it is not there);
    `has_vggt` False: a plain-InternVL checkpoint's entries, InternViT's features alone.
    An entry's tensor checksums are computed on its first read only (about half a warm read's
    time): training reads each scene again every epoch, and the file is the one verified."""
    from ..errors import CacheError
    from ..models.spacemind import EncoderOutputs

    verified: set[str] = set()

    def read(key: str):
        entry = cache.get(key, device=device, fingerprint=fingerprint, tensor_names=EncoderOutputs.names(has_vggt),
                          verify_data=key not in verified)
        if entry is None:
            raise CacheError(f"features of scene {key} are not in the cache {cache.root}; rerun to extract them")
        verified.add(key)
        return EncoderOutputs.from_tensors(entry.tensors)

    return read


def worker_passes(packs: Sequence[Pack], rank: int, world: int) -> list[Pass]:
    """This worker's passes of a step: its whole packs (`worker_share`), then fillers of one
    question of a scene it reads anyway (its first pack's), or of the step's smallest pack when it
    has none."""
    share = worker_share(packs, rank, world)
    real = [p for p in share if p is not None]
    spare = real[0] if real else min(packs, key=lambda p: len(p.examples))
    filler = Pack(spare.scene, spare.examples[:1])
    return [Pass(p, False) if p is not None else Pass(filler, True) for p in share]


def load_step(plan: StepPlan, index: int, rank: int, world: int, read: Callable[[str], Any]) -> StepData:
    packs = plan.step(index)
    data = StepData(index, packs, worker_passes(packs, rank, world))
    t0 = time.perf_counter()
    for p in data.passes:
        if p.pack.scene not in data.features:
            data.features[p.pack.scene] = read(p.pack.scene)
    data.read_s = time.perf_counter() - t0
    return data


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class StepFeed:
    def __init__(self, plan: StepPlan, steps: range, rank: int, world: int, read: Callable[[str], Any],
                 ahead: int = READ_AHEAD_STEPS):
        self.plan, self.steps, self.rank, self.world, self.read, self.ahead = plan, steps, rank, world, read, ahead
        self._queue: queue.Queue = queue.Queue()  # unbounded: the slots bound it
        self._slots = threading.Semaphore(max(ahead, 0))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> StepFeed:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[StepData]:
        if self.ahead <= 0:
            for index in self.steps:
                data = load_step(self.plan, index, self.rank, self.world, self.read)
                data.wait_s = data.read_s
                yield data
            return
        self._thread = threading.Thread(target=self._read_ahead, name="spacemind-train-read-ahead", daemon=True)
        self._thread.start()
        for _ in self.steps:
            t0 = time.perf_counter()
            item = self._queue.get()
            if isinstance(item, _Failed):
                raise item.exc
            item.wait_s = time.perf_counter() - t0
            self._slots.release()  # the step is the loop's now: the reader may read the next
            yield item

    def _read_ahead(self) -> None:
        try:
            for index in self.steps:
                while not self._slots.acquire(timeout=0.05):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._queue.put(load_step(self.plan, index, self.rank, self.world, self.read))
        except BaseException as exc:  # handed to the loop, raised there
            self._queue.put(_Failed(exc))

    def close(self) -> None:
        """Stop the reader (a read under way finishes first) and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
