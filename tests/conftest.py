import os
from pathlib import Path

# Idle OpenMP threads sleep instead of spinning: with two xdist workers on two cores,
# spinning threads steal the other worker's core (seen: a sweep 13 min instead of 30 s).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# optimize() would tell glibc to keep freed memory for the rest of the worker process
# (lightvid.accel.memory), which would then hold the peak heap of every test after it;
# tests/test_memory.py checks the setting in subprocesses and with the call recorded.
os.environ.setdefault("LIGHTVID_KEEP_FREED_MEMORY", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

# One intra-op thread per xdist worker (the workers already use every core); two otherwise.
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LIGHTVID_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` (real datasets); tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_synth(tmp_path_factory) -> Path:
    """A tiny synthetic motion set (4 direction classes, 16 train + 8 val clips, 8x32x32), made once per session.

    Layout as ``lightvid data synth``: ``train/<class>/*.mp4``, ``val/...``, ``classes.txt``,
    ``train.txt``, ``val.txt``; use it with ``DataConfig(root=str(tiny_synth), size=32, short_side=None,
    clip_len=8)``.
    """
    from lightvid.data.synth import ensure_synth

    return ensure_synth(tmp_path_factory.mktemp("tiny_synth") / "synth", workers=1, progress=False,
                        classes=4, train=16, val=8, frames=8, size=32)


@pytest.fixture
def two_threads():
    """Two torch threads for the test (xdist workers get one): the chunk-threaded Winograd path needs more."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
