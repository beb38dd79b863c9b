"""Shared fixtures: one tiny random-weight checkpoint per test session, the bundled examples."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"

# Fingerprint memo and other per-user state go to a throwaway home, never ~/.cache.
os.environ.setdefault("SPACEMIND_HOME", str(Path(os.environ.get("TMPDIR", "/tmp")) / f"spacemind-test-{os.getpid()}"))


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory) -> Path:
    from spacemind_cli.models.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def ckpt(tiny_ckpt) -> Path:
    return tiny_ckpt


@pytest.fixture(scope="module")
def one_torch_thread():
    """Toy-sized matrices gain nothing from threads, and on a busy 2-core machine OpenMP's
    spin-waiting made the model tests ~10x slower. Restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
