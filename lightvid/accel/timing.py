"""Wall-clock timing of calls, shared by ``bench``, ``optimize`` and the hybrid Winograd choice."""
from __future__ import annotations

import statistics
import time
from typing import Callable

import torch


def sync(x) -> None:
    """Wait for queued GPU work on ``x``'s device (no-op on CPU and for non-tensors)."""
    if isinstance(x, torch.Tensor) and x.is_cuda:
        torch.cuda.synchronize(x.device)


def minor_faults() -> int | None:
    """Minor page faults the process has taken so far (all threads), None where ``getrusage``
    is missing (Windows). A minor fault is a page mapped on first touch, e.g. freshly zeroed
    memory for an activation the allocator just took from the kernel."""
    try:
        import resource
    except ImportError:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_calls(fns: dict[str, Callable], x, repeats: int = 3, warmup: int = 1,
               progress: bool = False, desc: str = "timing", turn_warmup: int = 0,
               faults: dict[str, list[int]] | None = None) -> dict[str, list[float]]:
    """Seconds per call of each ``fns[k](x)``, ``repeats`` times each after ``warmup`` calls.

    The calls are interleaved round-robin, so a change in the machine's load hits every
    candidate alike; run under ``torch.no_grad()``, synchronised on CUDA. ``turn_warmup`` untimed
    calls precede each timed one in every round: they take the hand-over from the previous
    function (another runtime's threads still spinning, this one's asleep), so each timed call
    sees its own runtime as it runs alone. ``faults``, a dict, receives the minor page faults
    the process took during each timed call (:func:`minor_faults`; left empty where they
    cannot be counted).
    """
    from tqdm import tqdm

    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for _ in range(warmup):
            for f in fns.values():
                f(x)
        sync(x)
        for _ in tqdm(range(repeats), desc=desc, leave=False, disable=not progress):
            for k, f in fns.items():
                for _ in range(turn_warmup):
                    f(x)
                if turn_warmup:
                    sync(x)
                f0 = minor_faults() if faults is not None else None
                t0 = time.perf_counter()
                f(x)
                sync(x)
                times[k].append(time.perf_counter() - t0)
                if f0 is not None:
                    faults.setdefault(k, []).append(minor_faults() - f0)
    return times


def median_times(fns: dict[str, Callable], x, repeats: int = 3, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function (see :func:`time_calls`)."""
    return {k: statistics.median(v) for k, v in time_calls(fns, x, repeats, warmup).items()}
