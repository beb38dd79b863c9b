"""Test helper (not a test): run `spacemind ARGS...` and SIGKILL this very process at a chosen
commit point, to prove a crash exactly there loses nothing a rerun cannot recover.

    CRASH_AT=compact-unlink  python crash_at.py answer ...   # merged shard written, old shards not yet removed
    CRASH_AT=final-replace   python crash_at.py answer ...   # final OUT fully written to its temp file, not renamed
    CRASH_AT=cache-replace   python crash_at.py extract ...  # a cache entry fully written to its temp file, not renamed

`CRASH_AFTER=N` lets the first N matching points pass (default 0).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path


def _die() -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
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
        real_unlink = output._silent_unlink

        def unlink(path):
            if Path(path).name.startswith("shard-") and hit():
                _die()
            real_unlink(path)

        output._silent_unlink = unlink
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
