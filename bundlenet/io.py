"""Atomic file output: write to a temporary file in the same folder, then rename.

An interrupted write never leaves a half-written file under the final name, and an existing
file is only replaced once the new content is complete.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bundlenet.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` if the block succeeds."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # the mode of a plainly created file (mkstemp makes it 0600)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_with(path: str | os.PathLike[str], writer: Callable[[Path], None]) -> None:
    """Call ``writer(tmp_path)`` and rename the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        writer(tmp)


def copy_file(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy ``source`` onto ``path`` atomically (a reader never sees half a file)."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)


_HELD: dict[Path, int] = {}  # run directories this process holds the lock of → nesting depth


def is_inside(path: str | os.PathLike[str] | None, directory: str | os.PathLike[str]) -> bool:
    """Whether ``path`` (``None``: no path) lies in ``directory``, both resolved."""
    return path is not None and Path(path).resolve().is_relative_to(Path(directory).resolve())


def holds_lock(directory: str | os.PathLike[str]) -> bool:
    """Whether this process holds the run lock of ``directory`` (:func:`run_lock`)."""
    return Path(directory).resolve() / ".lock" in _HELD


@contextmanager
def run_lock(directory: str | os.PathLike[str], break_lock: bool = False) -> Iterator[None]:
    """Hold ``directory/.lock`` (``<pid> <host>``) while a job writes into ``directory``.

    A second job pointed at the same directory stops at once with a one-line
    :class:`~bundlenet.errors.InputError` naming the directory, the process and its host. A lock
    left by a process of this host that no longer exists (killed) is taken over; a lock of
    another host (a shared file system) is never taken over, since its process cannot be
    checked from here, unless ``break_lock`` (``break_lock=true``). The lock is re-entrant
    within one process, and removed at exit even when the process ends by ``sys.exit``.
    """
    path = Path(directory).resolve() / ".lock"
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] = max(_HELD.get(path, 1) - 1, 1)
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _acquire(path, directory, break_lock)
    except OSError as err:
        raise InputError(
            f"cannot write the run directory {directory} ({err.strerror or type(err).__name__}); pass a writable hydra.run.dir"
        ) from None
    _HELD[path] = 1
    atexit.register(_release, path, os.getpid())
    try:
        yield
    finally:
        _release(path, os.getpid())


def _acquire(path: Path, directory: str | os.PathLike[str], break_lock: bool) -> None:
    """Create the lock file ``path`` holding ``<pid> <host>``, taking over a stale one (its
    process gone, or ``break_lock``); a lock in use is an :class:`InputError`."""
    host = socket.gethostname()
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid, owner = _lock_owner(path)
            if owner not in (None, host) and not break_lock:
                raise InputError(
                    f"run directory {directory} is locked by process {pid} on host {owner}; wait for "
                    f"that job, or pass break_lock=true if it is gone, or another hydra.run.dir"
                ) from None
            if owner in (None, host) and pid > 0 and _alive(pid):
                raise InputError(
                    f"run directory {directory} is in use by process {pid} (another train.py); "
                    f"wait for it, or pass another hydra.run.dir"
                ) from None
            path.unlink(missing_ok=True)  # stale: its process is gone (or break_lock)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()} {host}\n")
        return
    raise InputError(f"run directory {directory}: another job took its lock at the same moment; pass another hydra.run.dir")


def _lock_owner(path: Path) -> tuple[int, str | None]:
    """``(pid, host)`` recorded in a lock file (``-1, None`` where unreadable)."""
    try:
        fields = path.read_text().split()
        return int(fields[0]), (fields[1] if len(fields) > 1 else None)
    except (OSError, ValueError, IndexError):
        return -1, None


def _release(path: Path, pid: int) -> None:
    """Remove ``path`` if it is this process's lock (forked children leave their parent's)."""
    if os.getpid() != pid:
        return
    _HELD.pop(path, None)
    owner, host = _lock_owner(path)
    if owner == pid and host in (None, socket.gethostname()):
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
