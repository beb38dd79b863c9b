"""Entry points: pick the benchmark, read the file, score it."""

from __future__ import annotations

import logging
import re
from collections import Counter
from pathlib import Path

from spacemind_cli.errors import InputError

from . import spbench, sqa3d, vsibench
from .common import parse_variant
from .records import Record, load_records
from .result import EvalResult

log = logging.getLogger(__name__)

BENCHMARKS = ("vsibench", "sqa3d", "spbench")
_ALIASES = {
    "vsibench": "vsibench", "vsi-bench": "vsibench", "vsi": "vsibench",
    "sqa3d": "sqa3d", "sqa": "sqa3d",
    "spbench": "spbench", "sp-bench": "spbench", "spbench-si": "spbench", "spbench-mv": "spbench",
}  # fmt: skip
_MARKER_FIELDS = ("benchmark", "dataset", "task", "split", "part", "subset", "config", "source")
_SQA3D_TYPE_NAMES = {"what", "is", "how", "can", "which", "others", "other", "sqa3d"}


def _marker(text: object) -> str | None:
    """Which benchmark a label such as "VSI-Bench", "SPBench-MV" or "sqa3d_test" names, if any."""
    if not isinstance(text, str):
        return None
    t = re.sub(r"[^a-z0-9]+", "", text.lower())
    if "sqa3d" in t:
        return "sqa3d"
    if "spbench" in t:
        return "spbench"
    if "vsibench" in t:
        return "vsibench"
    return None


def detect_benchmark(records: list[Record], source: str | Path = "") -> tuple[str, str]:
    """(benchmark, reason). Rules, first that answers:

    1. the rows' ``benchmark`` / ``dataset`` / ``task`` / ``split`` / ... fields naming a benchmark
       ("VSI-Bench", "SPBench-SI", "sqa3d"...): the most common one;
    2. the file name naming one (``vsibench_answers.jsonl``, ``SPBench-MV_results.jsonl``...);
    3. question types: VSI-Bench types on rows that mostly carry an ``images`` list -> spbench
       (SPBench is single-/multi-image, VSI-Bench is video); VSI-Bench types -> vsibench; rows with ``answers`` or
       ``situation`` fields, or SQA3D-style types (What/Is/How/Can/Which/Others) -> sqa3d;
    otherwise :class:`InputError` (pass the benchmark explicitly).
    """
    votes: Counter[str] = Counter()
    for rec in records:
        for name in _MARKER_FIELDS:
            m = _marker(rec.get(name))
            if m:
                votes[m] += 1
                break
    if votes:
        bench, n = votes.most_common(1)[0]
        return bench, f"{n} row(s) name {bench} in their fields"
    m = _marker(Path(str(source)).name)
    if m:
        return m, f"the file name names {m}"
    qtypes = Counter(rec.get("question_type") for rec in records)
    n_vsi = sum(c for t, c in qtypes.items() if t in spbench.KNOWN_TYPES)  # VSI-Bench's types and more
    n_sqa = sum(
        1
        for rec in records
        if "answers" in rec.fields
        or "situation" in rec.fields
        or (isinstance(rec.get("question_type"), str) and rec.get("question_type").lower() in _SQA3D_TYPE_NAMES)
    )
    n_images = sum(
        1 for rec in records if rec.get("question_type") in spbench.KNOWN_TYPES and isinstance(rec.get("images"), list)
    )
    if n_vsi and n_images * 2 > n_vsi:
        return "spbench", f"{n_images} row(s) with spatial question types carry an `images` list (SPBench is image-based)"
    if n_vsi and n_vsi >= n_sqa:
        return "vsibench", f"{n_vsi} of {len(records)} rows have VSI-Bench question types"
    if n_sqa:
        return "sqa3d", f"{n_sqa} of {len(records)} rows look like SQA3D (answers / situation / question word types)"
    seen = ", ".join(sorted(str(t) for t in qtypes)[:5])
    raise InputError(f"{source}: cannot tell the benchmark (question types: {seen}); pass --benchmark")


def _row_family(rec: Record) -> str | None:
    """Which benchmark one row belongs to, as far as the row alone says: the benchmark its fields
    name, "sqa3d" for SQA3D's shape (answers / situation), "vsi-style" for VSI-Bench's and
    SPBench's question types (their rows share a schema), else None."""
    for name in _MARKER_FIELDS:
        m = _marker(rec.get(name))
        if m:
            return "vsi-style" if m in ("vsibench", "spbench") else m
    if "answers" in rec.fields or "situation" in rec.fields:
        return "sqa3d"
    if rec.get("question_type") in spbench.KNOWN_TYPES:
        return "vsi-style"
    return None


def refuse_mixed(records: list[Record], source: str | Path = "") -> None:
    """An InputError when the rows come from more than one benchmark (one scorer would read the
    others' rows as broken), naming how many rows each has and where the first of each is."""
    first: dict[str, Record] = {}
    counts: Counter[str] = Counter()
    for rec in records:
        family = _row_family(rec)
        if family is not None:
            counts[family] += 1
            first.setdefault(family, rec)
    if len(counts) > 1:
        names = {"vsi-style": "VSI-Bench/SPBench", "sqa3d": "SQA3D"}
        parts = ", ".join(f"{names.get(k, k)} {n} row(s) (first: {first[k].loc})" for k, n in counts.most_common())
        raise InputError(f"{source} mixes benchmarks: {parts}; score each benchmark's answers in a file of its own")


def normalise_benchmark(name: str) -> str:
    key = name.strip().lower()
    if key == "auto":
        return "auto"
    if key not in _ALIASES:
        raise InputError(f"unknown benchmark '{name}' (use auto, {', '.join(BENCHMARKS)})")
    return _ALIASES[key]


def evaluate_records(
    records: list[Record],
    benchmark: str = "auto",
    variant: str = "official",
    *,
    source: str | Path = "",
    label: str | None = None,
    spbench_part: str | None = None,
) -> EvalResult:
    """Score already-loaded records (see :func:`evaluate_file`)."""
    variants = parse_variant(variant)
    bench = normalise_benchmark(benchmark)
    detected_note = None
    if bench == "auto":
        refuse_mixed(records, source)
        bench, reason = detect_benchmark(records, source)
        detected_note = f"benchmark auto-detected as {bench}: {reason}"
        log.info(detected_note)
    elif normalise_benchmark(benchmark) == "spbench" and spbench_part is None:
        low = benchmark.strip().lower()
        if low in ("spbench-si", "spbench-mv"):
            spbench_part = low[-2:]
    label = label or Path(str(source)).stem or bench
    if bench == "vsibench":
        result = vsibench.score_records(records, variants, str(source), label)
    elif bench == "sqa3d":
        result = sqa3d.score_records(records, variants, str(source), label)
    else:
        result = spbench.score_records(records, variants, str(source), label, part=spbench_part)
    if "anywhere" in variants and bench != "vsibench":
        result.notes.append("variant 'anywhere' only changes VSI-Bench numeric parsing; no effect here")
    if "leo-empty" in variants:
        result.notes.append("variant 'leo-empty' is the official SQA3D rule now; it changes nothing")
    if "nonempty" in variants and bench != "sqa3d":
        result.notes.append("variant 'nonempty' only applies to SQA3D; no effect here")
    if "lt" in variants and bench == "sqa3d":
        result.notes.append("variant 'lt' only applies to MRA; no effect on SQA3D")
    if "parsed" in variants:
        n_no_parsed = sum(1 for r in records if r.parsed is None)
        if n_no_parsed:
            result.notes.append(f"variant 'parsed': {n_no_parsed} row(s) have no `answer` field, scored as wrong")
    if detected_note:
        result.notes.insert(0, detected_note)
    result.input_format = records[0].fmt if records else ""
    if result.n_scored == 0 and result.n_unlabelled:
        raise InputError(f"{source}: no row has ground truth ({result.n_unlabelled} without); nothing to score")
    if result.n_scored == 0:
        raise InputError(f"{source}: no row could be scored as {bench} (unscored types: {result.unscored})")
    return result


def evaluate_file(
    path: str | Path,
    benchmark: str = "auto",
    variant: str = "official",
    *,
    label: str | None = None,
    spbench_part: str | None = None,
) -> EvalResult:
    """Score an answers file (our JSONL/Parquet, lmms-eval per-sample logs, SpatialLadder results).

    ``benchmark``: ``auto`` | ``vsibench`` | ``sqa3d`` | ``spbench`` (``spbench-si`` /
    ``spbench-mv`` also fix the part). ``variant``: ``official`` (default) or names from
    :data:`spacemind_cli.eval.VARIANTS` joined by ``+`` or ``,``. ``spbench_part``: ``SI`` or
    ``MV`` for SPBench files whose rows and name do not say. Raises
    :class:`~spacemind_cli.errors.InputError` (one line, naming file and line) on malformed input.
    """
    records = load_records(path)
    return evaluate_records(
        records, benchmark, variant, source=str(path), label=label, spbench_part=spbench_part
    )
