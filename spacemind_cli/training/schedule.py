"""Which questions each optimizer step trains on, as a pure function of (seed, epoch, step).

Every worker computes the same plan, so a resumed run (kill -9, a lost worker) continues exactly
where the last saved step left off, and workers need no coordination to agree on a step.

    epoch e:  each scene's questions shuffled and cut into the fewest packs of <= questions_per_pack
              (sizes differing by one at most): one packed sequence each, the scene's prefix once,
              then its questions. Each pack gets a place in the epoch, a scene's k packs one in each
              k-th of it (at random inside): a scene's packs lie spread over the epoch, not together.
    steps:    packs taken in that order until the step holds batch_size questions, skipping (for a
              later step) a pack whose scene the step already has, so a step's packs come from
              distinct scenes where the data allows; a pack that would overflow the step is split,
              its rest opening the next step.
    workers:  a step's packs spread over the workers whole, by question count, every worker getting
              the same number of passes (None: a filler that contributes no loss, so data-parallel
              collectives line up).

Why small packs: a step is what the CGMF learns from per update. Packs of a whole scene (18
questions) made a 64-question step of ~3 scenes; packs of 4 make it 16 scenes or more, and still
run the ~8,200-token prefix once per 4 questions (>= 3x fewer tokens than separate samples,
`bench/results/packing.md`).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

# Packs set aside because their scene was in the step already; beyond this many (a data set of a
# few huge scenes, where distinct scenes cannot be had) the oldest is taken anyway, which bounds
# the work per pack.
LOOKAHEAD = 256


@dataclass(frozen=True)
class Pack:
    scene: str  # the scene's feature-cache key
    examples: tuple[int, ...]  # indices into the run's example table


def split_sizes(n: int, cap: int) -> list[int]:
    """The sizes of the fewest packs of <= cap holding n questions, as equal as they can be
    (18 by 4: 4 4 4 3 3)."""
    k = math.ceil(n / cap)
    base, extra = divmod(n, k)
    return [base + 1] * extra + [base] * (k - extra)


class StepPlan:
    def __init__(self, by_scene: Mapping[str, Sequence[int]], *, seed: int, questions_per_pack: int,
                 batch_size: int, epochs: int, max_steps: int | None = None):
        self.by_scene = {k: tuple(v) for k, v in sorted(by_scene.items()) if v}
        self.seed, self.questions_per_pack, self.batch_size, self.epochs = seed, questions_per_pack, batch_size, epochs
        n = sum(len(v) for v in self.by_scene.values())
        self.steps_per_epoch = math.ceil(n / batch_size) if n else 0
        self.total_steps = self.steps_per_epoch * epochs
        if max_steps is not None:
            self.total_steps = min(self.total_steps, max_steps)
        self._epoch = lru_cache(maxsize=2)(self._epoch_steps)

    def _epoch_packs(self, epoch: int) -> list[Pack]:
        """The epoch's packs in the order steps take them."""
        rng = random.Random(f"spacemind-train:{self.seed}:{epoch}")  # str seeds are hashed stably
        placed = []
        for scene, examples in self.by_scene.items():
            order = list(examples)
            rng.shuffle(order)
            sizes = split_sizes(len(order), self.questions_per_pack)
            start = 0
            for j, size in enumerate(sizes):
                # pack j of k somewhere in the j-th k-th of the epoch; the third key breaks ties
                placed.append(((j + rng.random()) / len(sizes), rng.random(), Pack(scene, tuple(order[start : start + size]))))
                start += size
        placed.sort(key=lambda t: t[:2])
        return [p for _, _, p in placed]

    def _epoch_steps(self, epoch: int) -> list[list[Pack]]:
        steps: list[list[Pack]] = []
        current: list[Pack] = []
        scenes: set[str] = set()
        room = self.batch_size
        stream = iter(self._epoch_packs(epoch))
        waiting: list[Pack] = []  # packs whose scene a step had already, oldest first

        def next_pack() -> Pack | None:
            for i, pack in enumerate(waiting):
                if pack.scene not in scenes:
                    return waiting.pop(i)
            for pack in stream:
                if pack.scene not in scenes:
                    return pack
                waiting.append(pack)
                if len(waiting) > LOOKAHEAD:
                    break
            return waiting.pop(0) if waiting else None  # the data leaves no distinct scene

        while (pack := next_pack()) is not None:
            rest = pack.examples
            while rest:
                take, rest = rest[:room], rest[room:]
                current.append(Pack(pack.scene, take))
                scenes.add(pack.scene)
                room -= len(take)
                if room == 0:
                    steps.append(current)
                    current, scenes, room = [], set(), self.batch_size
        if current:
            steps.append(current)
        return steps

    def step(self, index: int) -> list[Pack]:
        """The packs of global step `index` (0-based)."""
        if not 0 <= index < self.total_steps:
            raise IndexError(f"step {index} outside 0..{self.total_steps - 1}")
        epoch, within = divmod(index, self.steps_per_epoch)
        return self._epoch(epoch)[within]

    def epoch_of(self, index: int) -> int:
        return index // self.steps_per_epoch if self.steps_per_epoch else 0


def worker_share(packs: Sequence[Pack], rank: int, world: int) -> list[Pack | None]:
    """This worker's packs of a step, whole (a pack split over workers would run its prefix on
    each): biggest first to the least loaded worker (ties to the lower rank), then padded with None
    so every worker runs the same number of passes. Workers beyond the step's pack count get only a
    filler (lower --questions-per-pack, or raise --batch-size, to give each one work)."""
    load = [0] * world
    shares: list[list[Pack]] = [[] for _ in range(world)]
    for pack in sorted(packs, key=lambda p: -len(p.examples)):  # stable: plan order among equals
        w = min(range(world), key=lambda r: (load[r], r))
        shares[w].append(pack)
        load[w] += len(pack.examples)
    longest = max(1, max(len(s) for s in shares))
    return shares[rank] + [None] * (longest - len(shares[rank]))
