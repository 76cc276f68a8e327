"""Page faults per call, and glibc keeping freed activation memory (lightvid.accel.memory)."""
import mmap
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from lightvid.accel import memory
from lightvid.accel.timing import minor_faults, time_calls

glibc_only = pytest.mark.skipif(not memory.is_glibc(), reason="mallopt is glibc's")
counts_faults = pytest.mark.skipif(minor_faults() is None, reason="no getrusage on this platform")


@counts_faults
def test_time_calls_counts_the_page_faults_of_each_timed_call():
    size = 16 << 20

    def touch(_):  # fresh anonymous memory, written once per 4 KiB page: one fault per page
        m = mmap.mmap(-1, size)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):
            m.madvise(mmap.MADV_NOHUGEPAGE)
        for i in range(0, size, mmap.PAGESIZE):
            m[i] = 1
        m.close()

    faults = {}
    times = time_calls({"touch": touch, "idle": lambda _: None}, torch.zeros(1), repeats=3, warmup=1,
                       faults=faults)
    assert {k: len(v) for k, v in faults.items()} == {"touch": 3, "idle": 3} == {k: len(v) for k, v in times.items()}
    assert min(faults["touch"]) >= 0.9 * size // mmap.PAGESIZE
    assert sorted(faults["idle"])[1] < 100


_FAULTS_PER_FORWARD = textwrap.dedent("""
    import sys, torch
    from lightvid.accel.memory import keep_freed_memory
    from lightvid.accel.timing import minor_faults
    if sys.argv[1] == "keep":
        assert keep_freed_memory() and keep_freed_memory()  # idempotent
    counts = []
    for _ in range(10):  # an activation of 48 MiB, above the largest mmap threshold glibc allows
        f0 = minor_faults()
        a = torch.empty(12 << 20).fill_(1.0)
        del a
        counts.append(minor_faults() - f0)
    print(sorted(counts[5:])[2])  # the median of the last five: after the heap has settled
""")


def _faults_per_forward(mode: str) -> int:
    env = {k: v for k, v in os.environ.items() if k != memory.ENV}  # conftest turns it off for the workers
    out = subprocess.run([sys.executable, "-c", _FAULTS_PER_FORWARD, mode], capture_output=True, text=True,
                         check=True, env=env)
    return int(out.stdout.split()[-1])


@glibc_only
@counts_faults
def test_keep_freed_memory_lets_the_next_forward_reuse_the_pages():
    default, kept = _faults_per_forward("default"), _faults_per_forward("keep")
    # glibc maps a 48 MiB block on its own and unmaps it on free: every call faults it in again
    assert default >= 10 * (kept + 1), (default, kept)
    assert kept < 100


def test_keep_freed_memory_is_a_no_op_off_glibc(monkeypatch):
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(memory, "is_glibc", lambda: False)
    monkeypatch.setattr(memory, "_mallopt_all", lambda: pytest.fail("mallopt called off glibc"))
    assert memory.keep_freed_memory() is False


@pytest.fixture
def recorded_mallopt(monkeypatch):
    """keep_freed_memory() as in a fresh process, its glibc call recorded instead of made."""
    calls = []
    monkeypatch.delenv(memory.ENV, raising=False)
    monkeypatch.setattr(memory, "_applied", None)
    monkeypatch.setattr(memory, "is_glibc", lambda: True)
    monkeypatch.setattr(memory, "_mallopt_all", lambda: calls.append("mallopt") or True)
    return calls


def test_optimize_keeps_freed_memory_on_the_cpu_unless_told_not_to(recorded_mallopt):
    import lightvid

    model = lightvid.create_model("c3d", num_classes=3, width_mult=0.125).eval()
    off = lightvid.optimize(model, precision="fp32", keep_memory=False)
    assert off.report["kept_freed_memory"] is False and recorded_mallopt == []
    on = lightvid.optimize(model, precision="fp32")
    assert on.report["kept_freed_memory"] is True and recorded_mallopt == ["mallopt"]
    lightvid.optimize(model, precision="fp32")
    assert recorded_mallopt == ["mallopt"]  # once per process


def test_the_environment_variable_turns_it_off(recorded_mallopt, monkeypatch):
    monkeypatch.setenv(memory.ENV, "0")
    assert memory.keep_freed_memory() is False and recorded_mallopt == []
