"""Winograd minimal-filtering convolution and the hybrid per-layer choice.

Lavin and Gray, "Fast Algorithms for Convolutional Neural Networks", CVPR 2016.
``F(m, 3)`` computes ``m`` outputs of a 3-tap filter with ``m + 2`` multiplications
instead of ``3m``; nesting it over every spatial dimension gives F(2x2, 3x3) (2.25x fewer
multiplications), F(4x4, 3x3) (4x) and F(2x2x2, 3x3x3) (3.375x). The tile size may differ
per dimension: F(4x2x2, 3x3x3) (4.5x), F(2x4x4, 3x3x3) (6x), F(4x4x4, 3x3x3) (8x); larger
tiles trade accuracy (larger transform coefficients) for fewer multiplications and less
memory traffic per output, and :func:`accelerate` picks per layer among them.

A kernel dimension of size 1 is the trivial F(1, 1) (``m = a = 1``, every matrix ``[[1]]``),
so the same nesting covers the (2+1)D-separable convolutions of R(2+1)D (Tran et al., CVPR
2018) with Winograd along their 3-tap dimensions only: F(1x2x2, 1x3x3) (2.25x) and
F(1x4x4, 1x3x3) (4x) for the 1x3x3 spatial convolution, F(2x1x1, 3x1x1) (1.5x) and
F(4x1x1, 3x1x1) (2x) for the 3x1x1 temporal one (the Winograd fast algorithm on separable
3D blocks that the light-weight 3D networks document proposes). The input and output
transforms skip the trivial dimensions (no pass over the data for them).

Implementation (all batched tensor ops, CPU or GPU):

* the filter transform ``U = G g G^T`` (per dimension, each with its own ``G``) is computed
  once in float64 and cached, laid out ``(P, C_in, C_out)`` with ``P = prod(m_i + 2)``
  transformed positions; it is recomputed when the weight changes (version counter, storage);
* the input goes to channels-last ``(B, S1, .., Sd, C)`` inside a cached zero-padded
  workspace; the input transform ``B^T d B`` is applied one dimension at a time over strided
  slices of the whole tensor (no tile copies): ``v_j = sum_k B^T[j, k] d[m*i + k]``, which
  leaves ``V`` as ``(P, tiles, C_in)``;
* one batched GEMM per chunk: ``(P, tiles, C_in) @ (P, C_in, C_out)``;
* the output transform ``A^T M A`` as one small GEMM per chunk, ``kron(A1^T, .., Ad^T)``
  ``(prod m_i, P)`` @ ``M`` viewed ``(P, tiles*C_out)`` (one pass over ``M``), then one scatter
  (with the bias fused in) into the interleaved channels-last output, which is returned as a
  ``(B, C, S1, .., Sd)`` view in channels-last(-3d) memory format (no copy).

Work is chunked over (sample, rows of tiles) so each chunk's ``V`` and ``M`` stay
cache-sized. The modules subclass ``nn.Conv2d``/``nn.Conv3d`` so ``lightvid summary`` still
counts their direct-convolution MACs; with autograd on, under autocast or for non-fp32 input
they fall back to the direct convolution.
"""
from __future__ import annotations

import functools
import math
import threading
from fractions import Fraction as Fr

import torch
import torch.nn as nn

from lightvid.accel.per_layer import channels_last_format, record_inputs, set_module
from lightvid.accel.timing import median_times
from lightvid.errors import UserError

# Lavin & Gray's matrices (rational, exact). B^T: (a, a), G: (a, r), A^T: (m, a), a = m + r - 1;
# F(m, 3) for m = 2, 4 and the trivial F(1, 1) of a kernel-1 dimension.
_MATRICES = {
    1: ([[1]], [[1]], [[1]]),
    2: (
        [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
        [[1, 0, 0], [Fr(1, 2), Fr(1, 2), Fr(1, 2)], [Fr(1, 2), Fr(-1, 2), Fr(1, 2)], [0, 0, 1]],
        [[1, 1, 1, 0], [0, 1, -1, -1]],
    ),
    4: (
        [[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
         [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]],
        [[Fr(1, 4), 0, 0], [Fr(-1, 6), Fr(-1, 6), Fr(-1, 6)], [Fr(-1, 6), Fr(1, 6), Fr(-1, 6)],
         [Fr(1, 24), Fr(1, 12), Fr(1, 6)], [Fr(1, 24), Fr(-1, 12), Fr(1, 6)], [0, 0, 1]],
        [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    ),
}
# bytes of V + M per chunk; a few MB keeps a chunk in L2/L3 (measured best on 2 cores, see docs)
CHUNK_BYTES = 24 << 20
# run chunks on Python worker threads (one intra-op thread each) instead of splitting each op
THREADED = True
_POOL: dict = {}


def _tile_fits(m: int, r: int) -> bool:
    """F(m, r) is one this module has: m = 2 or 4 for a 3-tap kernel dimension, m = 1 for a 1-tap one."""
    return m in (2, 4) if r == 3 else (r == 1 and m == 1)


def winograd_matrices(m: int, r: int = 3):
    """``(B^T, G, A^T)`` of F(m, r) as float64 tensors: F(2, 3), F(4, 3) or the trivial F(1, 1)."""
    if not _tile_fits(m, r):
        raise UserError(f"Winograd tile size m must be 2 or 4 for a 3-tap kernel (1 for a 1-tap one), "
                        f"got m={m}, kernel {r}")
    return tuple(torch.tensor([[float(v) for v in row] for row in mat], dtype=torch.float64)
                 for mat in _MATRICES[m])


def kernel_of(ms) -> tuple[int, ...]:
    """The kernel a tile is for: 1 where the tile size is 1 (trivial dimension), else 3."""
    return tuple(1 if m == 1 else 3 for m in ms)


@functools.lru_cache(maxsize=None)
def _data_transforms(ms: tuple[int, ...], device: torch.device, dtype: torch.dtype):
    """Per tile, once: ``B^T`` of each dimension as lists of coefficients, and the output
    transform ``kron(A1^T, .., Ad^T)`` ``(prod m, prod a)`` (small exact integers) on ``device``."""
    BT = [winograd_matrices(m, r)[0].tolist() for m, r in zip(ms, kernel_of(ms))]
    AT_kron = torch.ones(1, 1, dtype=torch.float64)
    for m, r in zip(ms, kernel_of(ms)):
        AT_kron = torch.kron(AT_kron, winograd_matrices(m, r)[2])
    return BT, AT_kron.to(device=device, dtype=dtype)


def _kernel(kernel) -> tuple[int, ...]:
    return (3,) * kernel if isinstance(kernel, int) else tuple(kernel)


def tile_sizes(tile, kernel) -> tuple[int, ...]:
    """``tile`` as one output tile size per dimension of ``kernel``.

    ``kernel``: the kernel size, e.g. ``(1, 3, 3)``, or an int ``d`` for a 3x..x3 kernel of
    ``d`` dimensions. ``tile``: an int (2 or 4) for every 3-tap dimension (kernel-1 dimensions
    get the trivial 1), or a tuple with one size per dimension, 1 exactly where the kernel is 1.
    """
    ks = _kernel(kernel)
    ms = tuple(1 if k == 1 else tile for k in ks) if isinstance(tile, int) else tuple(tile)
    if len(ms) != len(ks) or not all(_tile_fits(m, k) for m, k in zip(ms, ks)):
        want = "x".join("{2,4}" if k == 3 else "1" for k in ks)
        raise UserError(f"Winograd tile for kernel {'x'.join(map(str, ks))} must be 2 or 4, or a "
                        f"{len(ks)}-tuple {want}, got {tile!r}")
    return ms


def tile_name(ms) -> str:
    """``F(2x4x4,3x3x3)`` for tile sizes ``(2, 4, 4)``, ``F(1x4x4,1x3x3)`` for ``(1, 4, 4)``."""
    return f"F({'x'.join(map(str, ms))},{'x'.join(map(str, kernel_of(ms)))})"


def supports(conv: nn.Module) -> bool:
    """True for a stride-1, dilation-1, groups-1, zero-padded ``nn.Conv2d``/``nn.Conv3d`` whose kernel
    is 3 or 1 in every dimension and 3 in at least one: 3x3(x3), and the (2+1)D-separable 1x3x3
    and 3x1x1 (also 1x3, 3x1, 3x3x1, ..)."""
    if not isinstance(conv, (nn.Conv2d, nn.Conv3d)):
        return False
    d = 2 if isinstance(conv, nn.Conv2d) else 3
    ks = tuple(conv.kernel_size)
    return (all(k in (1, 3) for k in ks) and 3 in ks and tuple(conv.stride) == (1,) * d
            and tuple(conv.dilation) == (1,) * d and conv.groups == 1 and not conv.transposed
            and conv.padding_mode == "zeros" and not isinstance(conv.padding, str))


class _WinogradMixin:
    """Shared forward of :class:`WinogradConv2d` and :class:`WinogradConv3d`."""

    tile: tuple = (2, 2)

    def _setup(self, tile) -> None:
        self.tile = tile_sizes(tile, self.kernel_size)
        self._u = None  # (P, C_in, C_out) transformed filter
        self._u_key = None
        self._ws = {}  # padded-input workspaces: {thread id: {shape: buffer}}

    def extra_repr(self) -> str:
        return super().extra_repr() + f", winograd={tile_name(self.tile)}"

    def transformed_weight(self) -> torch.Tensor:
        """``U = G g G^T`` over every dimension, ``(P, C_in, C_out)``; computed once per weight."""
        w = self.weight
        key = (w._version, w.data_ptr(), w.dtype, w.device)
        if self._u is None or self._u_key != key:
            u = w.detach().to(torch.float64)  # (C_out, C_in, r1, .., rd)
            for m, r in zip(self.tile, self.kernel_size):
                # contract the first remaining kernel axis (index 2) and append the new one last
                G = winograd_matrices(m, r)[1].to(w.device)
                u = torch.tensordot(u, G, dims=([2], [1]))  # (C_out, C_in, r.., a)
            d = len(self.kernel_size)
            u = u.permute(*range(2, 2 + d), 1, 0)  # (a, .., a, C_in, C_out)
            self._u = u.reshape(-1, w.shape[1], w.shape[0]).to(w.dtype).contiguous()
            self._u_key = key
        return self._u

    def _fast_ok(self, x: torch.Tensor) -> bool:
        return (x.dtype == torch.float32 and self.weight.dtype == torch.float32
                and not (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad))
                and not torch.is_autocast_enabled(x.device.type) and x.dim() == len(self.kernel_size) + 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fast_ok(x):
            return super().forward(x)
        return winograd_conv(x, self.transformed_weight(), self.bias, self.padding, self.tile, self._ws)


class WinogradConv2d(_WinogradMixin, nn.Conv2d):
    """``nn.Conv2d`` (3x3, or 1x3 / 3x1; stride 1, groups 1) by F(2x2, 3x3) or F(4x4, 3x3) (or mixed)."""

    def __init__(self, *args, tile=2, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup(tile)


class WinogradConv3d(_WinogradMixin, nn.Conv3d):
    """``nn.Conv3d`` (3x3x3, 1x3x3, 3x1x1, ..; stride 1, groups 1) by F(2x2x2, 3x3x3), F(1x4x4, 1x3x3),
    F(4x1x1, 3x1x1) etc. (:func:`candidate_tiles`)."""

    def __init__(self, *args, tile=2, **kwargs):
        super().__init__(*args, **kwargs)
        self._setup(tile)


class _DirectMixin:
    """Direct convolution that first puts its input in a chosen memory format.

    ``accelerate`` picks the format that times faster; channels-last(-3d) input makes oneDNN
    return channels-last output, which the following ReLU/max-pool also run much faster on
    (MaxPool3d on contiguous NCDHW is several times slower than on channels-last-3d).
    """

    memory_format = torch.contiguous_format
    # True: always oneDNN (``torch.mkldnn_convolution``), where PyTorch would pick its reference
    # kernel (``slow_conv3d`` etc. for some small batch-1 shapes); set by
    # :func:`lightvid.accel.lowering.onednn_convs` (zero padding given as numbers only)
    onednn = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == len(self.kernel_size) + 2:
            x = x.contiguous(memory_format=self.memory_format)
            if self.onednn and not torch.compiler.is_compiling():  # inductor picks its own kernels
                return torch.mkldnn_convolution(x, self.weight, self.bias, self.padding, self.stride, self.dilation,
                                                self.groups)
        return super().forward(x)


class DirectConv2d(_DirectMixin, nn.Conv2d):
    """``nn.Conv2d`` run on input in ``memory_format``."""


class DirectConv3d(_DirectMixin, nn.Conv3d):
    """``nn.Conv3d`` run on input in ``memory_format``."""


def _rebuild(conv: nn.Module, cls2d: type, cls3d: type, **extra) -> nn.Module:
    """``conv`` as an instance of ``cls2d``/``cls3d`` sharing its parameters (no copy)."""
    cls = cls2d if isinstance(conv, nn.Conv2d) else cls3d
    with torch.device("meta"):
        new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                  padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                  bias=conv.bias is not None, padding_mode=conv.padding_mode, **extra)
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def direct_from_conv(conv: nn.Module, memory_format) -> nn.Module:
    """A :class:`DirectConv2d`/:class:`DirectConv3d` sharing ``conv``'s parameters that first puts
    its input in ``memory_format``."""
    new = _rebuild(conv, DirectConv2d, DirectConv3d)
    new.memory_format = memory_format
    return new


def from_conv(conv: nn.Module, tile=2) -> nn.Module:
    """A Winograd module sharing ``conv``'s parameters (no copy)."""
    if not supports(conv):
        raise UserError(f"{conv}: Winograd needs a stride-1, groups-1, zero-padded convolution with kernel 3 or 1 "
                        "in every dimension (3x3, 3x3x3, 1x3x3, 3x1x1, ..)")
    return _rebuild(conv, WinogradConv2d, WinogradConv3d, tile=tile)


def _workspace(ws: dict, shape, x: torch.Tensor) -> torch.Tensor:
    """A zero-bordered buffer of ``shape`` kept across calls (only its interior is rewritten).

    One per calling thread: two threads running the same module at once (a server's worker
    pool, a batch split over threads) would otherwise overwrite each other's padded input.
    """
    # an inference tensor can't be written outside inference mode (nor the reverse be kept)
    key = (tuple(shape), x.dtype, x.device, torch.is_inference_mode_enabled())
    me = threading.get_ident()
    if me not in ws:  # a thread's first call: let go of the buffers of threads that have ended
        alive = {t.ident for t in threading.enumerate()}
        for gone in [tid for tid in list(ws) if tid not in alive]:
            ws.pop(gone, None)
    mine = ws.setdefault(me, {})  # atomic under the GIL
    buf = mine.get(key)
    if buf is None:
        mine.clear()  # one shape at a time per thread: a new input size frees the old buffer
        buf = mine[key] = torch.zeros(shape, dtype=x.dtype, device=x.device)
    return buf


_SCRATCH = threading.local()
_SCRATCH_GENERATION = [0]  # bumped by release_scratch(); each thread drops its buffers on its next call


def release_scratch() -> None:
    """Let every thread's scratch buffers go (they only grow, to the largest chunk seen).

    :func:`accelerate` calls it after its trials, so that buffers sized for the candidate tiles
    it tried and rejected are not kept for the rest of the process.
    """
    _SCRATCH_GENERATION[0] += 1


def _scratch(tag: str, shape, like: torch.Tensor) -> torch.Tensor:
    """A per-thread buffer reused across chunks and calls (no fresh pages, no page faults)."""
    cache = getattr(_SCRATCH, "bufs", None)
    if cache is None or getattr(_SCRATCH, "generation", None) != _SCRATCH_GENERATION[0]:
        cache = _SCRATCH.bufs = {}
        _SCRATCH.generation = _SCRATCH_GENERATION[0]
    key = (tag, like.dtype, like.device, torch.is_inference_mode_enabled())
    numel = math.prod(shape)
    buf = cache.get(key)
    if buf is None or buf.numel() < numel:
        cache[key] = buf = torch.empty(numel, dtype=like.dtype, device=like.device)
    return buf[:numel].view(shape)


def _in_transform(x: torch.Tensor, BT: list, m: int, n: int, dim: int, pos: int) -> torch.Tensor:
    """Apply B^T along ``dim`` of ``x`` (tile stride ``m``, ``n`` tiles); new axis at ``pos``."""
    a = len(BT)
    shape = list(x.shape)
    shape[dim] = n
    out = _scratch(f"in{pos}", shape[:pos] + [a] + shape[pos:], x)
    for j, row in enumerate(BT):
        dst = out.select(pos, j)
        terms = [(c, k) for k, c in enumerate(row) if c != 0]
        src = [x.narrow(dim, k, m * (n - 1) + 1)[(slice(None),) * dim + (slice(None, None, m),)] for _, k in terms]
        (c0, _), s0 = terms[0], src[0]
        if len(terms) > 1 and c0 == 1:
            c1 = terms[1][0]
            torch.add(s0, src[1], alpha=c1, out=dst)
            rest = zip(terms[2:], src[2:])
        else:
            torch.mul(s0, c0, out=dst)
            rest = zip(terms[1:], src[1:])
        for (c, _), s in rest:
            dst.add_(s, alpha=c)
    return out


def _run_threaded(fn, chunks, workers: int) -> None:
    """Chunk-level parallelism: ``workers`` threads, each single-threaded inside torch ops.

    Each tensor op releases the GIL; one synchronisation per layer instead of one per op,
    which matters when the cores are shared (an op split over 2 threads waits for both).
    """
    from concurrent.futures import ThreadPoolExecutor

    pool = _POOL.get(workers)
    if pool is None:
        pool = _POOL[workers] = ThreadPoolExecutor(workers, thread_name_prefix="winograd",
                                                   initializer=torch.set_num_threads, initargs=(1,))
    inference = torch.is_inference_mode_enabled()  # thread-local state: carry it to the workers

    def call(chunk):
        with torch.inference_mode(inference), torch.no_grad():
            fn(chunk)

    list(pool.map(call, chunks))


def winograd_conv(x: torch.Tensor, u: torch.Tensor, bias: torch.Tensor | None, padding, tile,
                  ws: dict | None = None) -> torch.Tensor:
    """Stride-1 convolution of ``x`` (B, C, *S) by transformed filter ``u`` (P, C, K).

    ``tile``: F(m, 3)'s ``m``, one for every spatial dimension or one per dimension (``u`` must
    have been transformed with the same tiles); an int means a 3x..x3 kernel, and a tile size 1
    marks a kernel-1 dimension (trivial transform), e.g. ``(1, 4, 4)`` for a 1x3x3 kernel.
    """
    d = x.dim() - 2
    B, C = x.shape[:2]
    S = x.shape[2:]
    ms = tile_sizes(tile, d) if isinstance(tile, int) else tuple(tile)
    ks = kernel_of(ms)
    pad = (padding,) * d if isinstance(padding, int) else tuple(padding)
    a = [m + k - 1 for m, k in zip(ms, ks)]
    P, K = math.prod(a), u.shape[2]
    out_size = [s + 2 * p - k + 1 for s, p, k in zip(S, pad, ks)]
    if min(out_size) < 1:
        raise ValueError(f"input {tuple(x.shape)} is too small for a {'x'.join(map(str, ks))} convolution "
                         f"with padding {pad}")
    n = [math.ceil(o / m) for o, m in zip(out_size, ms)]  # tiles per dimension
    BT, AT_kron = _data_transforms(ms, x.device, x.dtype)
    # channels-last padded input: (B, m1*n1+r1-1, .., md*nd+rd-1, C), zero border
    xp = _workspace({} if ws is None else ws, [B] + [m * j + k - 1 for m, j, k in zip(ms, n, ks)] + [C], x)
    inner = xp[(slice(None),) + tuple(slice(p, p + s) for p, s in zip(pad, S))]
    inner.copy_(x.permute(0, *range(2, 2 + d), 1))  # (B, *S, C)
    # output with whole tiles, (B, m1*n1, .., md*nd, K); cropped at the end
    y = x.new_empty([B] + [m * j for m, j in zip(ms, n)] + [K])
    per_row = P * math.prod(n[1:]) * (C + K) * x.element_size()  # bytes of V + M per row of tiles
    workers = max(1, torch.get_num_threads()) if x.device.type == "cpu" else 1
    # chunks of (samples, rows of tiles): cache-sized, and at least one per worker thread
    budget = max(per_row, min(CHUNK_BYTES, per_row * n[0] * B // workers))
    rows = max(1, min(n[0], budget // per_row))
    per_b = max(1, budget // (per_row * n[0])) if rows == n[0] else 1
    chunks = [(b0, min(B, b0 + per_b), r0, min(n[0], r0 + rows))
              for b0 in range(0, B, per_b) for r0 in range(0, n[0], rows)]
    m0, k0 = ms[0], ks[0]

    def run(chunk):
        b0, b1, r0, r1 = chunk
        nc = [b1 - b0, r1 - r0] + n[1:]  # samples, then tiles per dimension
        v = xp[b0:b1, m0 * r0: m0 * r1 + k0 - 1]  # (Bc, rows*m1+r1-1, S2.., C)
        for i in range(d):  # v: a1..ai + (Bc, n1, .., ni, S(i+1).., C)
            if ms[i] == 1:  # kernel-1 dimension: B^T = [[1]], a = 1 and n = S, a new axis only
                v = v.unsqueeze(i)
            else:
                v = _in_transform(v, BT[i], ms[i], nc[i + 1], dim=2 * i + 1, pos=i)
        v = v.reshape(P, -1, C)  # (P, tiles, C)
        mm = torch.bmm(v, u, out=_scratch("mm", (P, v.shape[1], K), v))  # (P, tiles, K)
        del v
        # output transform as one small GEMM: kron(A1^T, .., Ad^T) (prod m, P) @ (P, tiles*K),
        # one pass over M instead of d passes of strided adds
        o = torch.mm(AT_kron, mm.view(P, -1), out=_scratch("out", (AT_kron.shape[0], mm.shape[1] * K), mm))
        del mm
        # scatter into y viewed (m1, .., md) + (Bc, n1, .., nd) + (K,)
        yc = y[b0:b1, m0 * r0: m0 * r1].view([nc[0]] + sum(([j, m] for j, m in zip(nc[1:], ms)), []) + [K])
        yc = yc.permute(*range(2, 2 * d + 1, 2), 0, *range(1, 2 * d, 2), 2 * d + 1)
        if bias is None:
            yc.copy_(o.view(list(ms) + nc + [K]))
        else:  # bias fused into the scatter (no extra pass over y)
            torch.add(o.view(list(ms) + nc + [K]), bias, out=yc)

    if workers > 1 and len(chunks) > 1 and THREADED:
        _run_threaded(run, chunks, workers)
    else:
        for chunk in chunks:
            run(chunk)
    y = y[(slice(None),) + tuple(slice(0, o) for o in out_size)]  # crop whole tiles
    y = y.permute(0, d + 1, *range(1, d + 1))  # (B, K, *S_out) in channels-last memory
    if out_size != [m * j for m, j in zip(ms, n)]:
        fmt = channels_last_format(d + 2)
        y = y.contiguous(memory_format=fmt)
    return y


# ----------------------------------------------------------------------------- hybrid choice



def candidate_tiles(kernel) -> list[tuple[int, ...]]:
    """Tiles ``algo="auto"`` tries on a layer with ``kernel`` (a kernel size, or an int ``d`` for 3x..x3).

    All-2 and all-4 over the 3-tap dimensions (1 on kernel-1 ones: F(1x2x2,1x3x3) and
    F(1x4x4,1x3x3) for 1x3x3, F(2x1x1,3x1x1) and F(4x1x1,3x1x1) for 3x1x1), and for 3x3x3 the two
    mixed ones, F(4x2x2) (big temporal tiles) and F(2x4x4) (big spatial tiles): a tile that
    divides the layer's output size wastes nothing on padding, and a larger tile needs fewer
    multiplications and less memory traffic per output.
    """
    ks = _kernel(kernel)
    tiles = [tile_sizes(2, ks), tile_sizes(4, ks)]
    if ks == (3, 3, 3):
        tiles[1:1] = [(4, 2, 2), (2, 4, 4)]
    return tiles


def _fits(tile, kernel) -> bool:
    try:
        tile_sizes(tile, kernel)
        return True
    except UserError:
        return False


def accelerate(model: nn.Module, example_input: torch.Tensor, algo: str = "auto", tile=None,
               repeats: int = 3, max_error: float = 1e-4, verbose: bool = True) -> nn.Module:
    """Replace eligible convolutions of ``model`` (in place) by Winograd ones where they are faster.

    ``algo="auto"`` runs ``example_input`` once to record each eligible layer's real input and
    times on it (median of ``repeats``) the direct convolution and the Winograd convolution with
    each tile of :func:`candidate_tiles` (or only ``tile`` when given). A tile whose output
    differs from the direct convolution's by more than ``max_error`` (relative max error on that
    input) is not used. The fastest wins, and the choice is printed per layer; a layer kept
    direct is swapped for a :class:`DirectConv3d`/:class:`DirectConv2d` that converts its input
    to whichever memory format, contiguous or channels-last, timed faster. ``"winograd"``
    replaces every eligible layer (``tile``, default 2) and ``"direct"`` none. Returns the model
    (in eval mode); ``model.winograd_choices`` lists ``(layer, choice, direct_ms, winograd_ms)``
    with ``winograd_ms`` the best accurate-enough tile's time.

    Eligible layers (:func:`supports`): 3x3(x3) and the (2+1)D-separable 1x3x3 / 3x1x1 ones.
    An int ``tile`` applies to every one of them; a tuple such as ``(1, 4, 4)`` only to the
    layers whose kernel it fits (the others are left as they are).
    """
    if algo not in ("auto", "winograd", "direct"):
        raise UserError(f"algo must be 'auto', 'winograd' or 'direct', got {algo!r}")
    model.eval()
    eligible = [(n, mod) for n, mod in model.named_modules()
                if supports(mod) and not isinstance(mod, (_WinogradMixin, _DirectMixin))]
    if tile is not None and not isinstance(tile, int):
        fits = [(n, mod) for n, mod in eligible if _fits(tile, mod.kernel_size)]
        if eligible and not fits:
            kernels = sorted({"x".join(map(str, mod.kernel_size)) for _, mod in eligible})
            raise UserError(f"Winograd tile {tile!r} fits none of the eligible layers' kernels {kernels} "
                            "(a tuple tile has 2 or 4 where the kernel is 3, and 1 where it is 1)")
        eligible = fits
    elif tile is not None:
        tile_sizes(tile, 3)  # an int must be 2 or 4
    choices = []
    if algo == "direct" or not eligible:
        model.winograd_choices = choices
        return model
    if algo == "winograd":
        for name, conv in eligible:
            new = from_conv(conv, 2 if tile is None else tile)
            set_module(model, name, new)
            choices.append((name, f"winograd {tile_name(new.tile)}", float("nan"), float("nan")))
        model.winograd_choices = choices
        return model
    inputs = record_inputs(model, eligible, example_input)
    for name, conv in eligible:
        if name not in inputs:  # not reached by the example input
            continue
        d = len(conv.kernel_size)
        ks = tuple(conv.kernel_size)
        xin = inputs[name]
        fmt = channels_last_format(d + 2)
        with torch.no_grad():
            ref = conv(xin)
            scale = ref.abs().max().clamp_min(torch.finfo(ref.dtype).tiny)
        winos, errors = {}, {}
        for ms in [tile_sizes(tile, ks)] if tile is not None else candidate_tiles(ks):
            winos[ms] = from_conv(conv, ms)
            with torch.no_grad():
                errors[ms] = ((winos[ms](xin) - ref).abs().max() / scale).item()
        # each direct format timed including the conversion of the recorded input to it;
        # all candidates interleaved so a change in load hits them alike
        fns = {f: (lambda t, f=f, conv=conv: conv(t.contiguous(memory_format=f)))
               for f in (torch.contiguous_format, fmt)}
        fns.update((ms, w) for ms, w in winos.items() if errors[ms] <= max_error)
        ms_by = {k: 1e3 * v for k, v in median_times(fns, xin, repeats).items()}
        direct_fmt = min((torch.contiguous_format, fmt), key=ms_by.get)
        direct_ms = ms_by[direct_fmt]
        trials = [(ms_by.get(ms, float("inf")), errors[ms], w) for ms, w in winos.items()]  # (ms, error, module)
        wino_ms, _, wino = min(trials, key=lambda t: t[0])
        best = wino if wino_ms < direct_ms else None
        set_module(model, name, best if best is not None else direct_from_conv(conv, direct_fmt))
        label = f"winograd {tile_name(best.tile)}" if best is not None else "direct"
        choices.append((name, label, direct_ms, wino_ms))
        if verbose:
            tried = "  ".join(f"{tile_name(w.tile)} " + (f"{t:7.2f} ms" if t < float("inf") else f"err {e:.0e}")
                              for t, e, w in trials)
            print(f"{name:<20} {'x'.join(map(str, xin.shape)):<20} direct {direct_ms:7.2f} ms  {tried}"
                  f"  -> {label}", flush=True)
    release_scratch()
    model.winograd_choices = choices
    return model
