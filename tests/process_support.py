"""Finding this test run's own Ray processes, to kill one of them on purpose.

Only processes started under this test process count (the embedded Ray's raylet is its child, and
the actors and train workers are the raylet's): another Ray job on the same machine, such as a
second test run, is never touched, and its processes never stand in for ours."""

from __future__ import annotations

import os

import psutil


def our_processes(name: str) -> list[psutil.Process]:
    """Live processes whose command line holds `name` (Ray titles a worker's process with the
    task or actor it runs, e.g. "ray::model_stage_share"), descended from this process."""
    me = os.getpid()
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.info["pid"] == me or name not in " ".join(proc.info["cmdline"] or []):
            continue
        try:
            if any(parent.pid == me for parent in proc.parents()):
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found
