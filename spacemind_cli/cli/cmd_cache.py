"""`spacemind cache ls|info|verify|prune`."""

from __future__ import annotations

import re
from pathlib import Path

import typer
from rich.table import Table

from ..errors import EXIT_CACHE, CacheError, InputError
from .common import console, err_console, handle_errors, summary_table

app = typer.Typer(
    help="Inspect, verify and prune a feature cache (Parquet files, one per scene entry; any Arrow reader opens them).",
    no_args_is_help=True,
)

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(text: str) -> float:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text)
    if not m:
        raise InputError(f"--older-than {text!r}: use a number with a unit, e.g. 90m, 12h, 7d")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _open(cache: Path):
    from ..cache import FeatureCache

    if not cache.exists():  # exit 4, as for a folder without a manifest: no cache either way
        raise CacheError(f"no feature cache at {cache} (it does not exist)")
    return FeatureCache(cache, create=False)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@app.command("ls")
@handle_errors
def ls(cache: Path = typer.Argument(..., metavar="CACHE", help="Feature cache folder.")):
    """List entries: scene, frames, size, encoder fingerprint, key."""
    import datetime as dt

    table = Table(title=f"cache {cache}")
    for col in ("scene", "frames", "size", "fingerprint", "written", "key"):
        table.add_column(col)
    n = 0
    for info in _open(cache).entries():
        n += 1
        when = dt.datetime.fromtimestamp(info.created).strftime("%Y-%m-%d %H:%M")
        scene = info.scene_key or "?"
        if info.error:
            scene += f" [red](unreadable: {info.error})[/]"
        table.add_row(scene, str(info.num_frames or "?"), _size(info.bytes), (info.fingerprint or "?")[:12], when, info.key)
    console.print(table)
    console.print(f"{n} entries")


@app.command("info")
@handle_errors
def info(cache: Path = typer.Argument(..., metavar="CACHE", help="Feature cache folder.")):
    """Totals: entries, bytes, encoder fingerprints, leftover temp files."""
    stats = _open(cache).stats()
    rows = [
        ("schema version", stats["schema_version"]),
        ("entries", stats["entries"]),
        ("size", _size(stats["bytes"])),
        ("per entry", _size(stats["bytes"] // stats["entries"]) if stats["entries"] else None),
        ("unreadable", stats["unreadable"]),
        ("temp files", stats["temp_files"]),
    ]
    for fp, d in stats["by_fingerprint"].items():
        desc = d.get("info") or {}
        rows.append((f"fingerprint {fp[:12]}", f"{d['entries']} entries, {_size(d['bytes'])} {desc.get('checkpoint', '')}"))
    console.print(summary_table(f"cache {cache}", rows))


@app.command("verify")
@handle_errors
def verify(cache: Path = typer.Argument(..., metavar="CACHE", help="Feature cache folder.")):
    """Read every entry and check checksums, schema and shapes; exit 4 naming the bad ones."""
    store = _open(cache)
    bad = store.verify()
    total = sum(1 for _ in store.entries())
    if bad:
        for path, reason in bad:
            err_console.print(f"[red]bad[/] {path}: {reason}", highlight=False)
        err_console.print(f"{len(bad)} of {total} entries are bad; `spacemind cache prune {cache} --bad` removes them")
        raise typer.Exit(EXIT_CACHE)
    console.print(f"all {total} entries verified")


@app.command("prune")
@handle_errors
def prune(
    cache: Path = typer.Argument(..., metavar="CACHE", help="Feature cache folder."),
    older_than: str | None = typer.Option(None, "--older-than", help="Entries written longer ago than this (e.g. 12h, 30d)."),
    fingerprint: str | None = typer.Option(None, "--fingerprint", help="Entries made with this encoder fingerprint."),
    keep_checkpoint: list[Path] = typer.Option([], "--keep-checkpoint", help="Keep only entries these checkpoints' encoders can use (prune the rest)."),
    bad: bool = typer.Option(False, "--bad", help="Entries that fail verification (reads every entry)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Only list what would be removed."),
):
    """Delete entries by age, fingerprint, checkpoint mismatch, or failed verification."""
    from ..models.checkpoint import encoder_fingerprint

    keep = {encoder_fingerprint(c) for c in keep_checkpoint} if keep_checkpoint else None
    if not any([older_than, fingerprint, keep, bad]):
        raise InputError("say what to prune: --older-than, --fingerprint, --keep-checkpoint or --bad")
    removed = _open(cache).prune(
        older_than=parse_age(older_than) if older_than else None,
        fingerprint=fingerprint,
        fingerprint_not_in=keep,
        bad=bad,
        dry_run=dry_run,
    )
    verb = "would remove" if dry_run else "removed"
    for info in removed:
        console.print(f"{verb} {info.scene_key or '?'} {info.path}")
    console.print(f"{verb} {len(removed)} entries ({_size(sum(i.bytes for i in removed))})")
