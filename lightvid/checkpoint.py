"""Safe, atomic checkpoint I/O.

* Loading never runs code: ``.pt``/``.pth``/``.ckpt`` files go through
  ``torch.load(weights_only=True)``; ``.safetensors`` (by suffix or content) through safetensors.
* A file that cannot be loaded is a one-line :class:`CheckpointError` naming the file and
  saying which of these it is (the file's first bytes are looked at, nothing is executed):
  not a checkpoint (empty, text, unknown bytes); truncated (a zip or pickle whose end is
  missing); made by another program (numpy ``.npy``/``.npz``, HDF5, gzip/tar, a zip of other
  files, a plain ``pickle.dump``); refused because unpickling would run code (a pickle that
  names a callable outside torch's allowed set, e.g. ``posix.system``); corrupt otherwise.
* Saving writes to a temporary file in the same folder and renames it into place, so a
  crash or a full disk never leaves a half-written checkpoint; a failed save says that the
  previous file is unchanged.
* Training checkpoints (a run's ``checkpoints/best.ckpt``) hold a ``lightvid`` entry that
  rebuilds the model, written by :func:`checkpoint_meta` and read back by
  :func:`lightvid.run_spec.load_model`::

      ckpt["lightvid"] -> {"model": "c3d", "model_kwargs": {...}, "num_classes": 10,
                           "classes": [...], "config": {...}, "epoch": 5, "metrics": {...}}
      ckpt["state_dict"] -> {"model.conv1.weight": ..., ...}

      model, meta = load_model("runs/x/checkpoints/best.ckpt")   # eval mode

This module imports nothing of lightvid and no Lightning: models load weights through it and
inference (``lightvid predict``, ``export``, ``bench``) reads checkpoints through it.
"""
from __future__ import annotations

import os
import pickletools
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

STATE_DICT_KEYS = ("state_dict", "model_state", "model")


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read safely; the message names the file."""


def save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` (or safetensors for a ``.safetensors`` path of tensors) via temp file + rename.

    A failure (disk full, a killed process) removes the temporary file and leaves an earlier
    file at ``path`` as it was; the :class:`CheckpointError` says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in obj.items()}, tmp)
        else:
            torch.save(obj, tmp)
        os.replace(tmp, path)
    except Exception as e:
        Path(tmp).unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "no file was written"
        raise CheckpointError(f"{path}: writing failed ({_first_line(e)}); {kept}") from e
    except BaseException:  # KeyboardInterrupt: no half-written file either
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_file(path: str | os.PathLike) -> Any:
    """Load a checkpoint without executing code; errors name the file and what is wrong, in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    kind = sniff(path)
    if path.suffix == ".safetensors" or kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file as st_load

        try:
            return st_load(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(e)})") from None
    if kind not in ("torch-zip", "torch-legacy"):
        raise CheckpointError(f"{path}: {kind}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(e)
        if "GLOBAL" in text:  # torch's allow-list check met a global it does not allow
            name = next((w for w in text.split("GLOBAL", 1)[1].split() if "." in w), "a global")
            raise CheckpointError(f"{path}: refused, unpickling it would call {name} (code execution); "
                                  "only tensors, numbers, strings and containers are loaded") from None
        if isinstance(e, EOFError) or "central directory" in text or "truncated" in text.lower():
            raise CheckpointError(f"{path}: truncated PyTorch checkpoint ({path.stat().st_size} bytes; the end "
                                  "is missing: an interrupted copy or download?)") from None
        raise CheckpointError(f"{path}: corrupt PyTorch checkpoint ({_first_line(e)})") from None


_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch.save's legacy (non-zip) format
_OTHER_FORMATS = {  # leading bytes -> what made the file
    b"\x93NUMPY": "a numpy .npy array (numpy.save), not a PyTorch checkpoint; numpy.load reads it",
    b"\x89HDF\r\n\x1a\n": "an HDF5 file (Keras / h5py), not a PyTorch checkpoint",
    b"\x1f\x8b": "a gzip archive, not a checkpoint; unpack it first",
    b"\x08": None,  # ONNX (protobuf field 1, ir_version) is told by the suffix below
}


def sniff(path: Path) -> str:
    """``torch-zip``, ``torch-legacy``, ``safetensors``, or a sentence saying what else ``path`` is.

    Reads the file's bytes only: pickles are walked with :func:`pickletools.genops`, which
    executes nothing.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if size == 0:
        return "an empty file (0 bytes), not a checkpoint"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return _sniff_zip(path, head)
    for magic, what in _OTHER_FORMATS.items():
        if what and head.startswith(magic):
            return what
    if path.suffix.lower() == ".onnx":
        return "an ONNX model, not a PyTorch checkpoint; use it with onnxruntime (lightvid bench FILE.onnx)"
    if len(head) > 262 and head[257:262] == b"ustar":
        return "a tar archive, not a checkpoint; unpack it first"
    if len(head) >= 10 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    with open(path, "rb") as f:
        verdict = _sniff_pickle(f, head)
    if verdict is not None:
        return verdict
    if _is_text(head):
        start = head[:40].decode("utf-8", "replace").splitlines()[0] if head.strip() else ""
        return f"a text file (it begins {start!r}), not a checkpoint"
    return f"not a checkpoint (unrecognised contents, first bytes {head[:8].hex()})"


def _sniff_zip(path: Path, head: bytes) -> str:
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        n = int.from_bytes(head[26:28], "little")  # the first entry's name in its local header
        first = head[30:30 + n].decode("utf-8", "replace")
        if first.endswith("data.pkl") or "/" in first and not first.endswith(".npy"):
            return (f"truncated PyTorch checkpoint ({path.stat().st_size} bytes; the end of its zip archive is "
                    "missing: an interrupted copy or download?)")
        return "a damaged or truncated zip archive, not a PyTorch checkpoint"
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return "torch-zip"  # torch.load's own allow-list judges its globals
    if names and all(n.endswith(".npy") for n in names):
        return "a numpy .npz archive (numpy.savez), not a PyTorch checkpoint; numpy.load reads it"
    shown = ", ".join(names[:3]) + (f" (+{len(names) - 3} more)" if len(names) > 3 else "")
    return f"a zip archive of other files ({shown or 'empty'}), not a PyTorch checkpoint"


def _sniff_pickle(f, head: bytes) -> str | None:
    """What the first pickle in ``f`` is, or None when ``f`` is not a pickle at all.

    ``torch-legacy`` for torch.save's old format (torch.load judges the rest); for any other
    pickle a refusal naming the first callable torch does not allow, or "a plain pickle";
    ``truncated`` for one that ends before its STOP.
    """
    strings: list[str] = []
    globals_: list[str] = []
    memo: dict[int, str] = {}  # memoised strings (STACK_GLOBAL may fetch its module name from the memo)
    n_memo = 0
    last = None  # the string the previous op pushed, if it pushed one
    ops = 0
    first_int = None
    try:
        for op, arg, _ in pickletools.genops(f):
            ops += 1
            pushed = None
            if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"):
                pushed = str(arg)
            elif op.name in ("BINGET", "LONG_BINGET", "GET") and int(arg) in memo:
                pushed = memo[int(arg)]
            elif op.name in ("MEMOIZE", "BINPUT", "LONG_BINPUT", "PUT"):
                index = n_memo if op.name == "MEMOIZE" else int(arg)
                n_memo += op.name == "MEMOIZE"
                if last is not None:
                    memo[index] = last
                continue  # the top of the stack is unchanged
            last = pushed
            if pushed is not None:
                strings.append(pushed)
            elif op.name in ("GLOBAL", "INST"):
                globals_.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL":
                globals_.append(".".join(strings[-2:]) if len(strings) >= 2 else "a global")
            elif op.name in ("LONG1", "LONG4", "INT", "LONG") and first_int is None:
                first_int = arg
            if op.name == "STOP":
                break
        else:
            raise ValueError("pickle exhausted before seeing STOP")
    except ValueError as e:
        if ops >= 2 and "exhausted" in str(e) and head[:1] == b"\x80":
            return "truncated pickle (its end is missing: an interrupted copy or download?)"
        return None  # not a pickle
    if first_int == _TORCH_MAGIC and not globals_:
        return "torch-legacy"
    allowed = _allowed_globals()
    bad = [g for g in globals_ if g not in allowed]
    if bad and all(g.split(".")[0] in _DATA_LIBRARIES for g in bad):
        return (f"a Python pickle of {bad[0].split('.')[0]} objects (pickle.dump, joblib or another program), not a "
                "torch.save checkpoint; lightvid reads torch.save and safetensors files")
    if bad:
        return (f"refused, unpickling it would call {bad[0]} (code execution); only tensors, numbers, strings "
                "and containers are loaded")
    return ("a plain Python pickle (pickle.dump or another program), not a torch.save checkpoint; "
            "lightvid reads torch.save and safetensors files")


_DATA_LIBRARIES = ("numpy", "pandas", "sklearn", "scipy")  # pickles of their objects: another program's files


def _allowed_globals() -> set[str]:
    """Globals ``torch.load(weights_only=True)`` accepts, as ``module.name``."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals()) | {f"{g.__module__}.{g.__qualname__}" for g in
                                              torch.serialization.get_safe_globals() if hasattr(g, "__qualname__")}
    except (ImportError, AttributeError):
        return set()  # an older torch: every global counts as code


def _is_text(head: bytes) -> bool:
    for cut in range(4):  # the 512 bytes may end inside a multi-byte character
        try:
            text = head[:len(head) - cut].decode("utf-8")
        except UnicodeDecodeError:
            continue
        return bool(text) and all(c.isprintable() or c in "\r\n\t" for c in text)
    return False


def extract_state_dict(obj: Any, path: str | os.PathLike = "<checkpoint>") -> dict[str, torch.Tensor]:
    """The state_dict inside ``obj``: itself, or under ``state_dict``/``model_state``/``model``."""
    if isinstance(obj, dict):
        for key in STATE_DICT_KEYS:
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise CheckpointError(f"{path}: holds no state_dict (expected tensors, or one under {STATE_DICT_KEYS})")


def load_state_dict_into(model: nn.Module, path: str | os.PathLike, strict: bool = True) -> nn.Module:
    """Load a local state_dict file into ``model``; a mismatch lists keys and shapes."""
    state = extract_state_dict(load_file(path), path)
    # Lightning checkpoints prefix the model's keys with "model."
    if all(k.startswith("model.") for k in state) and not any(k.startswith("model.") for k in model.state_dict()):
        state = {k[len("model."):]: v for k, v in state.items()}
    # A model that knows older key layouts of its own checkpoints renames them first.
    remap = getattr(model, "remap_state_dict", None)
    if callable(remap):
        state = remap(state)
    mismatch = state_dict_mismatch(model.state_dict(), state, strict)
    if mismatch:
        raise CheckpointError(f"{path}: does not match the model: {mismatch}")
    model.load_state_dict(state, strict=strict)
    return model


def state_dict_mismatch(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor], strict: bool = True) -> str:
    """How ``state`` fails to fit a model whose state_dict is ``own`` ("" when it fits).

    Differing shapes always count; missing and unexpected keys only when ``strict``. A missing
    batch-norm ``num_batches_tracked`` never counts (batch norm fills it; older files lack it).
    """
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if state[k].shape != own[k].shape]
    if not shapes and not (strict and (missing or unexpected)):
        return ""
    parts = []
    if missing:
        parts.append(f"missing keys {_abbrev(missing)}")
    if unexpected:
        parts.append(f"unexpected keys {_abbrev(unexpected)}")
    if shapes:
        parts.append(f"differing shapes {_abbrev(shapes)}")
    return "; ".join(parts)


def _abbrev(items: list[str], n: int = 8) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return "[" + ", ".join(items[:n]) + "]" + more


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:300]


# -- training checkpoints: the ``lightvid`` entry that rebuilds the model --------------------------
META_KEYS = ("model", "model_kwargs", "num_classes")  # what load_model needs


def plain(obj: Any) -> Any:
    """Tuples -> lists, recursively (checkpoint metadata must be weights_only-safe and YAML-able)."""
    if isinstance(obj, dict):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    return obj


def checkpoint_meta(model_name: str, model: nn.Module, model_kwargs: dict, num_classes: int, classes: list[str],
                    input_transform: str | None = None, config: dict | None = None, **extra: Any) -> dict:
    """The ``lightvid`` entry of a training checkpoint: what :func:`lightvid.run_spec.load_model` rebuilds
    the model from.

    ``model`` gives its ``default_cfg`` (mean, std, input size); ``extra`` adds keys such as
    ``epoch``, ``global_step``, ``metrics`` or ``converted_from``.
    """
    cfg = getattr(model, "default_cfg", {}) or {}
    return plain({
        "model": model_name,
        "model_kwargs": dict(model_kwargs),
        "num_classes": int(num_classes),
        "classes": list(classes),
        "input_transform": input_transform,
        "default_cfg": {k: v for k, v in cfg.items() if isinstance(v, (str, int, float, list, tuple))},
        "config": config or {},
        **extra,
    })


def save_model_checkpoint(model: nn.Module, meta: dict, path: str | os.PathLike) -> Path:
    """Write ``model``'s weights and ``meta`` (from :func:`checkpoint_meta`) as a training checkpoint
    that ``lightvid eval``/``predict``/``export`` and ``load_model`` read (atomically)."""
    state = {f"model.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    return save_atomic({"lightvid": meta, "state_dict": state}, path)


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint dict, with its ``lightvid`` metadata checked; errors name the file."""
    obj = load_file(path)
    if not isinstance(obj, dict) or "lightvid" not in obj or "state_dict" not in obj:
        raise CheckpointError(f"{path}: not a lightvid training checkpoint (no 'lightvid' metadata); "
                              "for a bare state_dict use create_model(name, weights=PATH)")
    meta = obj["lightvid"]
    missing = [k for k in META_KEYS if k not in meta]
    if missing:
        raise CheckpointError(f"{path}: checkpoint metadata lacks {', '.join(missing)}")
    return obj
