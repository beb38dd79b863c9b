"""Answer output: rows written as they finish, resumable, merged in question-file order.

    OUT.jsonl                  the answers, in question-file order (JSONL, or Parquet for .parquet)
    OUT.jsonl.parts/           resumable state: shard-<run tag>-<random>.jsonl, each written
                               atomically and sorted
    OUT.jsonl.errors.jsonl     questions that could not be answered in the last run, with reasons
    OUT.jsonl.summary.json     the last run's summary

Each shard line is {"i": index in the question file, "q": question digest, "r": run key,
"row": output row}. A rerun keeps the rows whose question digest and run key still match
(same question, same checkpoint and settings) and asks the rest. Answers made under another run
key (changed settings) live in shards of their own tag: never used, never lost, reported in the
summary, and resumed if the old settings come back. A kill -9 loses at most the
shards not yet renamed into place, i.e. the batch in flight. Memory stays flat: shards are
streamed and merged with a heap, never loaded whole.
"""

from __future__ import annotations

import heapq
import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from ..answer_files import output_paths
from ..errors import InputError, resource_error
from ..files import atomic_write_text, json_line, remove_quietly, remove_stale_temps
from ..fingerprint import text_digest
from ..tables import write_parquet

log = logging.getLogger(__name__)

SHARD_GLOB = "shard-*.jsonl"
_SHARD_NAME = re.compile(r"shard-(?P<tag>[0-9a-f]{16})-[0-9a-f]{32}\.jsonl")
_COMPACT_AT = 64  # shards of one run; beyond this, merge them into one


def question_digest(row: dict) -> str:
    return text_digest(row)[:16]


def new_shard_id() -> str:
    return uuid.uuid4().hex


def run_tag(run_key: str) -> str:
    """The part of a run key that names its shards."""
    return text_digest(run_key)[:16]


class AnswerStore:
    """The resumable record of one output's answers, kept per run key.

    Shards are named `shard-<run tag>-<random>.jsonl`, the run tag being the first 16 characters
    of the run key (checkpoint, frames, sampling, dtype, VGGT precision, max new tokens). A run
    reads, compacts and finalizes only its own run's shards: answers made with other settings can
    never shadow or be shadowed by this run's, and are kept apart (a rerun with those settings
    resumes them) until `--overwrite`. Within a run, a question's answer is valid while its
    digest (the question row) is unchanged.
    """

    def __init__(
        self,
        output: str | os.PathLike,
        run_key: str,
        *,
        overwrite: bool = False,
        errors_path: Path | None = None,
        summary_path: Path | None = None,
    ):
        self.output = Path(output)
        paths = output_paths(self.output)
        self.parts = paths["parts"]
        self.errors_path = errors_path or paths["errors"]
        self.summary_path = summary_path or paths["summary"]
        self.run_key = run_key
        self.run_tag = run_tag(run_key)
        if self.output.exists() and self.output.is_dir():
            raise InputError(f"--output {self.output} is a directory; give a .jsonl or .parquet file")
        if self.output.suffix.lower() not in (".jsonl", ".parquet"):
            raise InputError(f"--output {self.output}: use a .jsonl or .parquet file name")
        if overwrite:
            shutil.rmtree(self.parts, ignore_errors=True)
            for p in (self.output, self.errors_path, self.summary_path):
                remove_quietly(p)
        self._prepare_dir()

    def _prepare_dir(self) -> None:
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            probe = self.parts / f".probe-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise resource_error(exc, self.parts) from exc
        for stale in self.parts.glob(".*.tmp"):  # left by a crash mid-write
            remove_quietly(stale)
        for path in (self.output, self.errors_path, self.summary_path):  # a crash mid-finalize, mid-run
            remove_stale_temps(path)

    # ------------------------------------------------------------ reading back
    def _shard_files(self, tag: str | None = None) -> list[Path]:
        """This run's shards (or those of the run tagged `tag`), in name order."""
        return sorted(self.parts.glob(f"shard-{tag or self.run_tag}-*.jsonl"))

    def other_runs(self) -> dict[str, int]:
        """Answers kept for other run keys: {run tag: records}, for the summary."""
        counts: dict[str, int] = {}
        for path in self.parts.glob(SHARD_GLOB):
            m = _SHARD_NAME.fullmatch(path.name)
            if m and m.group("tag") != self.run_tag:
                counts[m.group("tag")] = counts.get(m.group("tag"), 0) + sum(1 for _ in self._read_shard(path))
        return counts

    @staticmethod
    def _read_shard(path: Path) -> Iterator[dict]:
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        rec = None
                    if not isinstance(rec, dict) or not isinstance(rec.get("i"), int) or "row" not in rec:
                        # Shards are renamed into place whole, so this is outside damage: skip
                        # the line, its question is simply asked again.
                        log.warning("skipping a damaged line in %s", path)
                        continue
                    yield rec
        except FileNotFoundError:  # compacted away by a concurrent finalize: nothing to read
            return

    def _records(self) -> Iterator[dict]:
        """This run's records from every shard, ordered by question index (ties in shard order)."""
        streams = [self._read_shard(p) for p in self._shard_files()]
        for rec in heapq.merge(*streams, key=lambda r: r["i"]):
            if rec.get("r") == self.run_key:
                yield rec

    def _valid(self, digests: list[str]) -> Iterator[dict]:
        """One record per question index whose stored question digest still matches, in order.
        The choice never depends on shard names: among this run's records of one index, only the
        one for the current question counts, and equal ones are interchangeable."""
        last = None
        for rec in self._records():
            i = rec["i"]
            if i == last or not 0 <= i < len(digests) or rec.get("q") != digests[i]:
                continue
            last = i
            yield rec

    def completed(self, digests: list[str]) -> set[int]:
        """Indices whose stored answer is still valid for this question file and run key."""
        return {rec["i"] for rec in self._valid(digests)}

    # ------------------------------------------------------------ writing
    def _write_shard(self, tag: str, dump) -> None:
        atomic_write_text(self.parts / f"shard-{tag}-{new_shard_id()}.jsonl", dump)

    def write(self, records: list[tuple[int, str, dict]]) -> None:
        """Persist (index, question digest, row) records as one new shard of this run."""
        if not records:
            return
        records = sorted(records, key=lambda r: r[0])

        def dump(fh):
            for i, q, row in records:
                fh.write(json_line({"i": i, "q": q, "r": self.run_key, "row": row}))

        self._write_shard(self.run_tag, dump)
        if len(self._shard_files()) > _COMPACT_AT:
            self.compact()

    def compact(self) -> None:
        """Merge this run's shards into one (crash-safe: the merged shard lands before the old
        ones go). Only exact duplicates (same index, question and run) are dropped, so no record
        this or a later run could use is ever lost; other runs' shards are not touched."""
        old = self._shard_files()
        if len(old) <= 1:
            return

        def dump(fh):
            seen: set[tuple[int, str]] = set()
            last = None
            for rec in self._records():
                if rec["i"] != last:
                    seen.clear()
                    last = rec["i"]
                if rec.get("q") in seen:
                    continue
                seen.add(rec.get("q"))
                fh.write(json_line(rec))

        self._write_shard(self.run_tag, dump)
        for p in old:
            remove_quietly(p)

    def rows(self, digests: list[str]) -> Iterator[dict]:
        """The valid answer rows, in question-file order."""
        for rec in self._valid(digests):
            yield rec["row"]

    def finalize(self, digests: list[str]) -> int:
        """Write the output file from this run's shards; returns the number of rows."""
        self.compact()
        if self.output.suffix.lower() == ".parquet":
            return write_parquet(self.output, lambda: self.rows(digests))
        count = 0

        def dump(fh):
            nonlocal count
            for row in self.rows(digests):
                fh.write(json_line(row))
                count += 1

        atomic_write_text(self.output, dump)
        return count

