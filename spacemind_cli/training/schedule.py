"""Which questions each optimizer step trains on, as a pure function of (seed, epoch, step).

Every worker computes the same plan, so a resumed run (kill -9, a lost worker) continues exactly
where the last saved step left off, and workers need no coordination to agree on a step.

    epoch e:  each scene's questions shuffled, cut into packs of <= pack_size (one packed sequence
              each: the scene's prefix once, then its questions); all packs shuffled.
    steps:    packs taken in order until the step holds batch_size questions; a pack that would
              overflow is split, its rest opening the next step.
    workers:  a step's packs spread over the workers by question count, every worker getting the
              same number of packs (None: a filler that contributes no loss, so data-parallel
              collectives line up).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Pack:
    scene: str  # the scene's feature-cache key
    examples: tuple[int, ...]  # indices into the run's example table


class StepPlan:
    def __init__(self, by_scene: Mapping[str, Sequence[int]], *, seed: int, pack_size: int, batch_size: int,
                 epochs: int, max_steps: int | None = None):
        self.by_scene = {k: tuple(v) for k, v in sorted(by_scene.items()) if v}
        self.seed, self.pack_size, self.batch_size, self.epochs = seed, pack_size, batch_size, epochs
        n = sum(len(v) for v in self.by_scene.values())
        self.steps_per_epoch = math.ceil(n / batch_size) if n else 0
        self.total_steps = self.steps_per_epoch * epochs
        if max_steps is not None:
            self.total_steps = min(self.total_steps, max_steps)
        self._epoch = lru_cache(maxsize=2)(self._epoch_steps)

    def _epoch_packs(self, epoch: int) -> list[Pack]:
        rng = random.Random(f"spacemind-train:{self.seed}:{epoch}")  # str seeds are hashed stably
        packs = []
        for scene, examples in self.by_scene.items():
            order = list(examples)
            rng.shuffle(order)
            packs += [Pack(scene, tuple(order[i : i + self.pack_size])) for i in range(0, len(order), self.pack_size)]
        rng.shuffle(packs)
        return packs

    def _epoch_steps(self, epoch: int) -> list[list[Pack]]:
        steps: list[list[Pack]] = []
        current: list[Pack] = []
        room = self.batch_size
        for pack in self._epoch_packs(epoch):
            rest = pack.examples
            while rest:
                take, rest = rest[:room], rest[room:]
                current.append(Pack(pack.scene, take))
                room -= len(take)
                if room == 0:
                    steps.append(current)
                    current, room = [], self.batch_size
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
    """This worker's packs of a step: biggest first to the least loaded worker (ties to the lower
    rank), then padded with None so every worker runs the same number of packs. A step with fewer
    packs than workers has its biggest packs halved first (the prefix then runs twice, but no
    worker idles while another does two scenes' work)."""
    packs = list(packs)
    while len(packs) < world:
        biggest = max(range(len(packs)), key=lambda i: (len(packs[i].examples), -i))
        big = packs[biggest]
        if len(big.examples) < 2:
            break
        half = (len(big.examples) + 1) // 2
        packs[biggest : biggest + 1] = [Pack(big.scene, big.examples[:half]), Pack(big.scene, big.examples[half:])]
    load = [0] * world
    shares: list[list[Pack]] = [[] for _ in range(world)]
    for pack in sorted(packs, key=lambda p: -len(p.examples)):
        w = min(range(world), key=lambda r: (load[r], r))
        shares[w].append(pack)
        load[w] += len(pack.examples)
    longest = max(len(s) for s in shares)
    return shares[rank] + [None] * (longest - len(shares[rank]))
