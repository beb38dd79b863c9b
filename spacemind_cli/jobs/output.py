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

import contextlib
import heapq
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import InputError, resource_error
from ..fingerprint import text_digest

log = logging.getLogger(__name__)

SHARD_GLOB = "shard-*.jsonl"
_SHARD_NAME = re.compile(r"shard-(?P<tag>[0-9a-f]{16})-[0-9a-f]{32}\.jsonl")
_COMPACT_AT = 64  # shards of one run; beyond this, merge them into one


def json_line(obj) -> str:
    """One JSONL line, UTF-8 text kept readable; text that is not valid Unicode (file names with
    non-UTF-8 bytes reach us as lone surrogates) is written as JSON escapes instead of failing."""
    text = json.dumps(obj, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(obj)
    return text + "\n"


def question_digest(row: dict) -> str:
    return text_digest(row)[:16]


def new_shard_id() -> str:
    return uuid.uuid4().hex


def run_tag(run_key: str) -> str:
    """The part of a run key that names its shards."""
    return text_digest(run_key)[:16]


_OPEN_TEMPS: set[str] = set()  # temp files this process is writing right now


def _claim_temp(path: Path) -> tuple[int, str]:
    """A fresh hidden temp file beside `path`, named for its writer (`.<name>.<host>.<pid>.<rand>.tmp`,
    see cache/fsutil.py) so that a later run can tell a dead writer's leftovers from a live one's."""
    from ..cache import fsutil

    tmp = str(fsutil.temp_name(path))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    _OPEN_TEMPS.add(tmp)
    return fd, tmp


def _done_with_temp(tmp: str) -> None:
    _OPEN_TEMPS.discard(str(tmp))


def remove_stale_temps(path: Path) -> None:
    """Remove the temp files of `path` (`.<name>.*.tmp` beside it) left by writers that died on
    this host (kill -9, power loss), or by an earlier job of this process that could not remove
    them (e.g. the disk had turned read-only); temp files of live writers stay."""
    from ..cache import fsutil

    prefix = f".{path.name}."
    mine = f".{fsutil._HOST}.{os.getpid()}."  # this process's temp files: ".<host>.<pid>."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix) and fsutil.is_temp_name(n)]
    except OSError:
        return
    for name in names:
        tmp = path.parent / name
        orphan = mine in name[len(prefix) - 1 :] and str(tmp) not in _OPEN_TEMPS
        if orphan or fsutil.is_stale_temp(tmp, older_than=None):
            _silent_unlink(tmp)


@contextlib.contextmanager
def atomic_target(path: Path):
    """Yields a temp path beside `path` to write; on success it replaces `path` in one rename, on
    any failure it is removed. OSErrors (disk full, read-only, permission) become ResourceError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _claim_temp(path)
        os.close(fd)
    except OSError as exc:
        raise resource_error(exc, path) from exc
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _silent_unlink(tmp)
        raise resource_error(exc, path) from exc
    except BaseException:
        _silent_unlink(tmp)
        raise
    finally:
        _done_with_temp(tmp)


def atomic_write_text(path: Path, write) -> None:
    """write(fh) into a temp file beside `path`, fsync, rename. Raises ResourceError."""
    with atomic_target(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())


def _silent_unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def output_paths(output: Path) -> dict[str, Path]:
    return {
        "parts": output.with_name(output.name + ".parts"),
        "errors": output.with_name(output.name + ".errors.jsonl"),
        "summary": output.with_name(output.name + ".summary.json"),
    }


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
                _silent_unlink(p)
        self._prepare_dir()
        self._split_untagged_shards()

    def _prepare_dir(self) -> None:
        try:
            self.parts.mkdir(parents=True, exist_ok=True)
            probe = self.parts / f".probe-{uuid.uuid4().hex}"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise resource_error(exc, self.parts) from exc
        for stale in self.parts.glob(".*.tmp"):  # left by a crash mid-write
            _silent_unlink(stale)
        for path in (self.output, self.errors_path, self.summary_path):  # a crash mid-finalize, mid-run
            remove_stale_temps(path)

    def _split_untagged_shards(self) -> None:
        """Shards written before run tags were in their names (`shard-<random>.jsonl`) are split
        into one tagged shard per run key they hold, then removed (crash-safe: the tagged shards
        land first; a rerun after a crash only finds exact duplicates, which merging drops)."""
        untagged = [p for p in self.parts.glob(SHARD_GLOB) if _SHARD_NAME.fullmatch(p.name) is None]
        if not untagged:
            return
        by_key: dict[str, list[dict]] = {}
        for path in sorted(untagged):
            for rec in self._read_shard(path):
                by_key.setdefault(str(rec.get("r")), []).append(rec)
        for key, recs in by_key.items():
            recs.sort(key=lambda r: r["i"])

            def dump(fh, recs=recs):
                for rec in recs:
                    fh.write(json_line(rec))

            self._write_shard(run_tag(key), dump)
        for path in untagged:
            _silent_unlink(path)

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
            _silent_unlink(p)

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


def row_batches(rows: Iterable[dict], batch_rows: int) -> Iterator[list[dict]]:
    buf: list[dict] = []
    for row in rows:
        buf.append(row)
        if len(buf) >= batch_rows:
            yield buf
            buf = []
    if buf:
        yield buf


def merged_schema(schema, rows: list[dict]):
    """`schema` widened to fit `rows` too: new columns are added, mixed types promoted, so a
    column that first appears late (or changes type) is never dropped or refused."""
    import pyarrow as pa

    new = infer_schema(rows)
    if schema is None:
        return new
    fields = {f.name: f for f in schema}
    for f in new:
        old = fields.get(f.name)
        if old is None or old.type == f.type:
            fields.setdefault(f.name, f)
            continue
        try:
            fields[f.name] = pa.unify_schemas([pa.schema([old]), pa.schema([f])], promote_options="permissive").field(0)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. numbers and text: text holds both
            fields[f.name] = pa.field(f.name, pa.string())
    return pa.schema(list(fields.values()))


def write_parquet(path: Path, rows_factory, batch_rows: int = 2048) -> int:
    """Stream rows into one Parquet file: a first pass settles a schema every row fits (mixed
    types are widened), the second writes. Rows are never all in memory."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = None
    for buf in row_batches(rows_factory(), batch_rows):
        schema = merged_schema(schema, buf)
    if schema is None:
        schema = pa.schema([])
    count = 0
    with atomic_target(path) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            for buf in row_batches(rows_factory(), batch_rows):
                writer.write_table(to_table(buf, schema))
                count += len(buf)
    return count


def _arrow_safe(value):
    """Arrow stores only valid UTF-8: text with lone surrogates (non-UTF-8 file names) gets them
    as backslash escapes, the same text a JSON reader shows."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_arrow_safe(v) for v in value]
    if isinstance(value, dict):
        return {_arrow_safe(k): _arrow_safe(v) for k, v in value.items()}
    return value


def _jsonable_cell(value):
    # Columns that mix types (a ground truth that is sometimes a number) become text.
    return value if isinstance(value, str) or value is None else json.dumps(value)


def infer_schema(rows: list[dict]):
    import pyarrow as pa

    rows = [_arrow_safe(r) for r in rows]
    keys: dict[str, None] = {}
    for r in rows:
        keys.update(dict.fromkeys(r))
    fields = []
    for k in keys:
        col = [r.get(k) for r in rows]
        try:
            arr = pa.array(col)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            arr = pa.array([_jsonable_cell(v) for v in col], type=pa.string())
        fields.append(pa.field(k, arr.type))
    return pa.schema(fields)


def to_table(rows: list[dict], schema):
    import pyarrow as pa

    rows = [_arrow_safe(r) for r in rows]
    cols = {}
    for f in schema:
        col = [r.get(f.name) for r in rows]
        try:
            cols[f.name] = pa.array(col, type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            if pa.types.is_string(f.type) or pa.types.is_large_string(f.type):
                cols[f.name] = pa.array([_jsonable_cell(v) for v in col], type=f.type)
            else:
                raise
    return pa.table(cols, schema=schema)


class ErrorLog:
    """*.errors.jsonl: one line per question (or scene) that failed, streamed to disk and put in
    place atomically when the run ends."""

    def __init__(self, path: Path):
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, self._tmp = _claim_temp(path)
        except OSError as exc:
            raise resource_error(exc, path) from exc
        self._fh = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0

    def add(self, record: dict) -> None:
        try:
            self._fh.write(json_line(record))
            self._fh.flush()
        except OSError as exc:
            raise resource_error(exc, self.path) from exc
        self.count += 1

    def close(self) -> None:
        try:
            self._fh.close()
            if self.count:
                os.replace(self._tmp, self.path)
            else:
                _silent_unlink(self._tmp)
                _silent_unlink(self.path)
        except OSError as exc:
            _silent_unlink(self._tmp)
            raise resource_error(exc, self.path) from exc
        finally:
            _done_with_temp(self._tmp)


def iter_jsonl(path: Path) -> Iterable[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
