"""Atomic file output: write to a temporary sibling, then rename.

Existing outputs are never half-overwritten: if writing fails, the old file
stays and the temporary one is removed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary path keeps ``path``'s suffix so that writers that choose a
    format from the extension (OpenCV, numpy) behave the same.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        # mkstemp makes 0600 files: give the result the mode a plain open() would (or the replaced file's)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, obj, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(obj, indent=indent) + "\n")


AT_FDCWD = -100
RENAME_EXCHANGE = 2  # renameat2 flag (Linux 3.15+): swap two paths in one step


def _exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where the system
    or the file system cannot, and nothing has changed then."""
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return fn(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_siblings(path: Path) -> None:
    """Remove the temporary folders (``.NAME.PID.*.tmp`` / ``.old``) that a killed :func:`atomic_dir`
    for ``path`` left beside it: those whose writer PID no longer runs."""
    for p in path.parent.glob(f".{path.name}.*"):
        parts = p.name[len(path.name) + 2:].split(".")
        if len(parts) == 3 and parts[0].isdigit() and parts[2] in ("tmp", "old") and p.is_dir():
            if not _pid_alive(int(parts[0])):
                shutil.rmtree(p, ignore_errors=True)


def _link_tree(src: Path, dst: Path) -> None:
    """Fill ``dst`` with hard links to every file under ``src`` (copies where links fail): the starting
    content of a folder that is added to. Writers inside replace files by rename (:func:`atomic_path`),
    which never changes the linked originals."""
    for d, dirs, files in os.walk(src):
        rel = Path(d).relative_to(src)
        (dst / rel).mkdir(exist_ok=True)
        for name in files:
            try:
                os.link(Path(d) / name, dst / rel / name)
            except OSError:
                shutil.copy2(Path(d) / name, dst / rel / name)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, add: bool = False) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; move it to ``path`` on success.

    If ``path`` exists and ``overwrite`` is true it is replaced only after the
    new directory is complete, in one atomic swap where the system has one
    (Linux), so a kill at any moment leaves the old folder or the new one, never
    a mix; on failure the temporary directory is removed and ``path`` is
    untouched. With ``add`` the temporary directory starts as a copy (hard
    links) of ``path``'s content: for outputs added to an existing folder.
    Temporary folders of killed earlier writers are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_siblings(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        if add and path.is_dir():
            _link_tree(path, tmp)
        yield tmp
        os.chmod(tmp, (path.stat().st_mode & 0o7777) if path.is_dir() else 0o777 & ~_umask())  # mkdtemp: 0700
        if path.exists():
            if not overwrite and not add:
                raise FileExistsError(path)
            if _exchange(tmp, path):  # tmp now holds the old folder: removed below
                return
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".old", dir=path.parent))
            old.rmdir()
            os.replace(path, old)  # a kill between these two leaves no path, the old folder in .old
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
