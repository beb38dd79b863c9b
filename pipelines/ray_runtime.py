"""Connecting to Ray: an embedded local instance by default, or a cluster by address."""

from __future__ import annotations

import logging
import os
from typing import Any

from spacemind_cli.errors import InputError

log = logging.getLogger(__name__)


def connect(address: str | None = None, log_to_driver: bool = True) -> bool:
    """Initialise Ray; returns True when this call started an embedded instance.

    `address=None` always starts a fresh embedded instance (`address="local"`), even when
    RAY_ADDRESS is set, so a stray environment variable never sends work to a shared cluster.
    """
    try:
        import ray
    except ImportError:
        raise InputError("ray is not installed; install ray[data] or use --executor local") from None
    if ray.is_initialized():
        return False
    _quiet_ray_loggers()
    kwargs: dict[str, Any] = dict(include_dashboard=False, logging_level=logging.ERROR, log_to_driver=log_to_driver)
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        if address:
            ray.init(address=address, **kwargs)
            started = False
        else:
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
            started = True
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "an embedded Ray instance"
        raise InputError(f"cannot start or join {where}: {' '.join(str(exc).split())[:300]}") from None
    _quiet_ray_loggers()  # Ray Data installs its own handlers on first use
    return started


def _quiet_ray_loggers() -> None:
    # Ray's INFO lines (execution plans, dataset names) are noise next to our progress bar;
    # its log files under /tmp/ray keep everything.
    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_ray_data_console() -> None:
    """Ray Data logs its execution plan to the console at INFO with its own handler; keep its
    log file (under /tmp/ray/session_*/logs) complete and the console for our progress bar."""
    import ray.data  # noqa: F401  (configures Ray Data's logging)

    for handler in logging.getLogger("ray.data").handlers:
        if type(handler).__name__ != "SessionFileHandler":
            handler.setLevel(logging.ERROR)


def cluster_gpus() -> int:
    import ray

    return int(ray.cluster_resources().get("GPU", 0))


def cluster_cpus() -> tuple[float, float]:
    """(CPUs in the cluster, CPUs of its largest alive node)."""
    import ray

    per_node = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    return float(ray.cluster_resources().get("CPU", 0)), max(per_node, default=0.0)


def shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def alive_nodes() -> int:
    import ray

    return sum(1 for n in ray.nodes() if n.get("Alive"))
