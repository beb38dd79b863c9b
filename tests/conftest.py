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
