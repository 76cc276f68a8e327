"""Keeping freed activation memory in the process between forwards (glibc's ``malloc``).

PyTorch's CPU allocator takes every tensor from ``malloc`` and gives it back when the tensor
dies. glibc serves a block above its mmap threshold (128 KiB at start, raised as large blocks
are freed, up to 32 MiB) with a fresh ``mmap`` and unmaps it again on ``free``, and it trims
the top of its heap back to the kernel once more than 128 KiB lie free there. A forward whose
activations are tens of MB can then take a page fault, and a page of zeros from the kernel,
for every 4 KiB of them on every call, depending on the process's allocation history: the
same oneDNN Graph model of IR-CSN-50 at batch 8 took 0 minor faults per forward in one process
and 50,178 (200 MB) in another (docs/inference.md, "Page faults"). OpenVINO and ONNX Runtime
keep their own arenas and take none.

:func:`keep_freed_memory` sets three of glibc's ``mallopt`` parameters for the whole process
(the same three glibc reads from ``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_`` and
``MALLOC_TOP_PAD_`` at start-up): no block is mapped on its own (every block, however large,
comes from the heap; a thread whose arena cannot hold it falls back to the main heap), the heap
is trimmed only when more than 2 GiB lie free at its top, and it grows 256 MiB beyond each
request (address space only: a page takes memory when it is first written). Raising the mmap
threshold alone is not enough: glibc caps it at 32 MiB, and IR-CSN-50's stem output at batch 8
is 98 MiB, mapped and unmapped twice per forward. With the settings, freed activations stay
in the heap and the next forward reuses them (0 faults per forward). The price is that the
process keeps its peak heap until it exits, as an inference runtime's arena does. Nothing
happens on a C library other than glibc (:func:`keep_freed_memory` returns False), nor when the
environment sets ``LIGHTVID_KEEP_FREED_MEMORY=0`` (for a process that must give memory back,
e.g. one that trains after it benchmarks; ``optimize(..., keep_memory=False)`` does the same
for one call).
"""
from __future__ import annotations

import ctypes
import os
import platform
import threading

# glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_MAX = -4

TRIM_THRESHOLD = 2**31 - 1  # the most mallopt takes (an int): in practice the heap is not trimmed
TOP_PAD = 256 << 20

ENV = "LIGHTVID_KEEP_FREED_MEMORY"
_LOCK = threading.Lock()
_applied: bool | None = None


def is_glibc() -> bool:
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def keep_freed_memory() -> bool:
    """Make glibc keep freed memory in the process (see the module docstring). Idempotent;
    True when the settings are in force, False on a C library other than glibc or with
    ``LIGHTVID_KEEP_FREED_MEMORY=0``."""
    global _applied
    if os.environ.get(ENV, "1").strip() == "0":
        return bool(_applied)  # settings made before the variable was set stay in force
    with _LOCK:
        if _applied is None:
            _applied = is_glibc() and _mallopt_all()
        return _applied


def in_force() -> bool:
    """Whether :func:`keep_freed_memory` has made its settings in this process."""
    return bool(_applied)


def _mallopt_all() -> bool:
    try:  # the process's own symbols, glibc's among them (find_library would spawn ldconfig)
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in
               ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD), (_M_TOP_PAD, TOP_PAD)))
