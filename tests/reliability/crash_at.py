"""Test helper (not a test): run `spacemind ARGS...` and SIGKILL this very process at a chosen
commit point, to prove a crash exactly there loses nothing a rerun cannot recover; or pause it
there, so that a test can signal it at a known point instead of after a sleep.

    CRASH_AT=compact-unlink  python crash_at.py answer ...   # merged shard written, old shards not yet removed
    CRASH_AT=final-replace   python crash_at.py answer ...   # final OUT fully written to its temp file, not renamed
    CRASH_AT=cache-replace   python crash_at.py extract ...  # a cache entry fully written to its temp file, not renamed

`CRASH_AFTER=N` lets the first N matching points pass (default 0).

    PAUSE_AT=shard-before    python crash_at.py answer ...   # answers of an item in hand, shard not yet written
    PAUSE_AT=shard-after     python crash_at.py answer ...   # a shard just renamed into place
    PAUSE_AT=cache-after     python crash_at.py extract ...  # a cache entry just published
    PAUSE_AT=train-saved     python crash_at.py train ...    # a training state just saved

`PAUSE_AFTER=N` pauses at the N-th such point (N >= 1; for shard-before, N-1 shards are written).
Pausing creates the file `PAUSE_MARKER`, then sleeps until a signal ends the process.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def _pause() -> None:
    Path(os.environ["PAUSE_MARKER"]).write_text(str(os.getpid()))
    while True:  # until the test's signal: SIGINT raises KeyboardInterrupt here, SIGKILL ends us
        time.sleep(3600)


def install_pause(point: str, nth: int) -> None:
    seen = {"n": 0}

    def reached() -> bool:
        seen["n"] += 1
        return seen["n"] == nth

    if point in ("shard-before", "shard-after"):
        from spacemind_cli.jobs.output import AnswerStore

        real_write = AnswerStore.write

        def write(self, records):
            hit = bool(records) and reached()
            if hit and point == "shard-before":
                _pause()
            real_write(self, records)
            if hit:
                _pause()

        AnswerStore.write = write
    elif point == "cache-after":
        from spacemind_cli.cache.store import FeatureCache

        real_put = FeatureCache.put

        def put(self, *args, **kwargs):
            path = real_put(self, *args, **kwargs)
            if reached():
                _pause()
            return path

        FeatureCache.put = put
    elif point == "train-saved":
        from spacemind_cli.training import loop

        real_save = loop.save_state

        def save(*args, **kwargs):
            path = real_save(*args, **kwargs)
            if reached():
                _pause()
            return path

        loop.save_state = save
    else:
        raise SystemExit(f"unknown PAUSE_AT={point!r}")


def main() -> None:
    if "PAUSE_AT" in os.environ:
        install_pause(os.environ["PAUSE_AT"], int(os.environ.get("PAUSE_AFTER", "1")))
        from spacemind_cli.cli.main import app

        app(args=sys.argv[1:], prog_name="spacemind")
        return
    point = os.environ["CRASH_AT"]
    budget = {"left": int(os.environ.get("CRASH_AFTER", "0"))}

    def hit() -> bool:
        if budget["left"] <= 0:
            return True
        budget["left"] -= 1
        return False

    if point == "compact-unlink":
        from spacemind_cli.jobs import output

        output._COMPACT_AT = 2  # compact after every third shard
        real_unlink = output.remove_quietly

        def unlink(path):
            if Path(path).name.startswith("shard-") and hit():
                _die()
            real_unlink(path)

        output.remove_quietly = unlink
    elif point in ("final-replace", "cache-replace"):
        real_replace = os.replace

        def replace(src, dst, **kw):
            name = Path(dst).name
            final = name.endswith(".parquet") if point == "cache-replace" else (name.endswith(".jsonl") and ".parts" not in str(dst) and not name.endswith(".errors.jsonl"))
            if final and hit():
                _die()
            return real_replace(src, dst, **kw)

        os.replace = replace
    else:
        raise SystemExit(f"unknown CRASH_AT={point!r}")

    from spacemind_cli.cli.main import app

    app(args=sys.argv[1:], prog_name="spacemind")


if __name__ == "__main__":
    main()
