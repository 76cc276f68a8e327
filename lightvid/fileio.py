"""Writing a file so that a crash, a kill or a full disk never leaves half of it.

:func:`atomic_path` yields a temporary name in the same folder (so the rename cannot cross
file systems); the finished file is renamed onto the target with ``os.replace`` (atomic on
POSIX and Windows), and on any failure the temporary file is removed and an earlier file at
the target is left as it was. Nothing else in the folder is touched. See docs/files.md.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path next to ``path`` (same suffix, so writers that go by it work) renamed onto it at the end."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)  # mkstemp made it 0600: give it the permissions of an ordinary new file
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


class FolderLock:
    """``FOLDER/.lightvid.lock``, created with ``O_EXCL``: one lightvid process writes a folder at a time.

    The lock file records pid, host and start time. A lock whose process is gone (same
    host, pid not running) is stale and taken over; any other is refused in one line naming
    the holder. ``release`` removes the file only while it still holds this process's token.
    """

    NAME = ".lightvid.lock"

    def __init__(self, folder: str | os.PathLike, what: str = "run"):
        self.path = Path(folder) / self.NAME
        self.what = what
        self.token = None

    def acquire(self) -> FolderLock:
        import json
        import socket
        import time
        import uuid

        from lightvid.errors import UserError

        token = uuid.uuid4().hex
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "token": token}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is not None and not self._stale(holder):
                    raise UserError(
                        f"{self.path.parent}: another lightvid {self.what} (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}) is writing this folder; wait for "
                        f"it to end or choose another --out (if it died on another machine, delete {self.path})"
                    ) from None
                if holder is not None or self._age() > 10:  # stale, or unreadable for a while: take it over
                    self.path.unlink(missing_ok=True)
                else:  # being written right now by a process that just created it
                    time.sleep(0.2)
                continue
            with os.fdopen(fd, "w") as f:
                json.dump(info, f)
            self.token = token
            return self
        raise UserError(f"{self.path}: could not take the folder's lock; delete it if no lightvid process runs")

    def _holder(self) -> dict | None:
        import json

        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else None
        except (OSError, ValueError):
            return None

    def _age(self) -> float:
        import time

        try:
            return time.time() - self.path.stat().st_mtime
        except OSError:
            return 0.0

    @staticmethod
    def _stale(holder: dict) -> bool:
        import socket

        if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int) or os.name == "nt":
            return False  # another machine's process cannot be checked (nor, safely, a Windows one): assume it runs
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # exists, another user's
        return False

    def release(self) -> None:
        if self.token is not None and (self._holder() or {}).get("token") == self.token:
            self.path.unlink(missing_ok=True)
        self.token = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_output_file(out: str | os.PathLike, inputs=()) -> Path:
    """Refuse (one line) an output path that is a folder, or that is one of ``inputs`` (it would be replaced)."""
    from lightvid.errors import UserError

    out = Path(out)
    if out.is_dir():
        raise UserError(f"{out}: is a folder; give the output file's name (e.g. {out / 'model.onnx'})")
    for src in inputs:
        try:
            same = out.exists() and Path(src).exists() and os.path.samefile(src, out)
        except OSError:
            same = False
        if same:
            raise UserError(f"{out}: is also the input {src}; writing it would replace the input, so choose another "
                            "output name (nothing was written)")
    return out


def check_result_folder(folder: str | os.PathLike, names: tuple[str, ...], marker: str, key: str,
                        what: str) -> None:
    """Refuse (one line, nothing written) a folder holding any of ``names`` unless they are an earlier result.

    An earlier result is recognised by its ``marker`` JSON file holding ``key``: a rerun into
    the same folder replaces its own files, but never a file of the user's with the same name.
    """
    import json

    from lightvid.errors import UserError

    folder = Path(folder)
    present = [n for n in names if os.path.lexists(folder / n)]
    if not present:
        return
    try:
        ours = key in json.loads((folder / marker).read_text())
    except (OSError, ValueError, TypeError):
        ours = False
    if not ours:
        raise UserError(f"{folder / present[0]}: exists and is not an earlier lightvid {what}; choose another "
                        "--out (nothing was written)")
