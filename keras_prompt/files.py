"""Crash-safe files: atomic writes, staging directories, stale leftovers;
and line-numbered reading of UTF-8 text files.

A file or directory is written under a hidden temporary name beside its
destination and renamed into place when complete, so a reader (or a TF
Serving process polling an export's base directory) never sees half of one.

Temporaries are created with `os.open(..., 0o666)` / `os.mkdir(..., 0o777)`,
not `tempfile`'s private 0600 / 0700, so the renamed result has the
permissions a plain `open()` / `mkdir` would give it under the caller's umask
(a model server often runs as another user).

A writer holds an exclusive `flock` on its temporary while it works. A later
writer can then tell the leftovers of a killed process (nobody holds their
lock) from another live writer's work in progress (locked), and removes only
the leftovers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
_READ_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)


def _try_lock(fd: int) -> bool | None:
    """True: now ours; False: another process holds it; None: this file
    system has no locks (then nothing is treated as stale)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:
        return None
    return True


def _still_there(path: Path, fd: int) -> bool:
    """Whether `path` still names the file `fd` holds (not removed by a cleaner
    that locked it in the instant between its creation and our lock)."""
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _create_locked(parent: Path, prefix: str, suffix: str, directory: bool):
    """A new, locked temporary `(path, fd)` in `parent`."""
    while True:
        path = parent / f"{prefix}{secrets.token_hex(6)}{suffix}"
        if directory:
            os.mkdir(path, 0o777)
            fd = os.open(path, _READ_FLAGS)
        else:
            fd = os.open(path, _WRITE_FLAGS, 0o666)
        if _try_lock(fd) is not False and _still_there(path, fd):
            return path, fd
        os.close(fd)


def sync_directory(path: str | os.PathLike) -> None:
    """Makes renames inside `path` durable (best effort where unsupported)."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def temp_file(destination: Path, write: Callable[[BinaryIO], None]) -> Iterator[Path]:
    """Writes a locked, fsynced temporary beside `destination`; yields its path.

    The lock lasts until the block ends, so the block may rename the file
    (the lock follows it) and do more work before the write counts as done.
    A temporary still under its first name at the end is removed.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    path, fd = _create_locked(
        destination.parent, f".{destination.name}.", ".tmp", directory=False
    )
    try:
        with os.fdopen(os.dup(fd), "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        yield path
    finally:
        Path(path).unlink(missing_ok=True)
        os.close(fd)


def atomic_write(
    path: str | os.PathLike, write: Callable[[BinaryIO], None] | bytes
) -> Path:
    """Writes `path` all at once: temp file, fsync, rename, directory fsync.

    `write` is the bytes or a function writing to a binary file object. An
    interrupted or failed write leaves the previous file (if any) untouched.
    """
    path = Path(path)
    if isinstance(write, (bytes, bytearray)):
        data = bytes(write)

        def write(f):
            f.write(data)

    with temp_file(path, write) as temp:
        os.replace(temp, path)
    sync_directory(path.parent)
    return path


@contextlib.contextmanager
def staging_directory(parent: Path, prefix: str) -> Iterator[Path]:
    """A new, locked directory in `parent` to build a result in.

    The block renames it into place when complete; if the block fails, the
    directory and its contents are removed.
    """
    parent.mkdir(parents=True, exist_ok=True)
    path, fd = _create_locked(parent, prefix, "", directory=True)
    try:
        yield path
    except BaseException:
        shutil.rmtree(path, ignore_errors=True)
        raise
    finally:
        os.close(fd)


def require_new_dir(directory: str | os.PathLike) -> Path:
    """`directory` as a Path; refuses an existing non-empty one."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(
            f"Output directory {directory} already exists and is not empty; "
            "expected a new or empty directory, refusing to overwrite it."
        )
    return directory


@contextlib.contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Builds directory `target` all at once: yields a locked staging
    directory beside it, renamed to `target` when the block completes (and
    removed if it fails). An existing `target` must be empty.

    Example:

    ```python
    from pathlib import Path
    from keras_prompt import files
    with files.staged_dir(Path("/tmp/out_dir")) as staging:
        (staging / "config.json").write_text("{}")
    ```
    """
    with staging_directory(target.parent, f".{target.name}.") as staging:
        yield staging
        if target.is_dir():
            target.rmdir()  # Empty (require_new_dir); rename needs it gone.
        staging.rename(target)
    sync_directory(target.parent)


def remove_stale(parent: str | os.PathLike, patterns: Iterable[str]) -> list[Path]:
    """Removes temporaries matching `patterns` that no live writer holds.

    Returns the removed paths. Entries another process has locked (a write
    in progress) are left alone.
    """
    parent = Path(parent)
    removed = []
    if not parent.is_dir():
        return removed
    for pattern in patterns:
        for path in sorted(parent.glob(pattern)):
            try:
                fd = os.open(path, _READ_FLAGS)
            except OSError:
                continue
            try:
                if _try_lock(fd) is not True:
                    continue
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed.append(path)
            finally:
                os.close(fd)
    return removed


def is_locked(path: str | os.PathLike) -> bool:
    """Whether a live writer holds `path`'s lock."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError:
        return False
    try:
        return _try_lock(fd) is not True
    finally:
        os.close(fd)


def numbered_lines(path: str | os.PathLike, label: str) -> Iterator[tuple[int, str]]:
    """The lines of a UTF-8 text file, numbered from 1, without their line
    breaks. A missing file or a line that is not UTF-8 fails with ``label``
    and the path (and the line) in the message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{label} {path} does not exist.")
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as e:
                raise ValueError(
                    f"{label} {path}, line {number}: not UTF-8 text ({e.reason} "
                    f"at byte {e.start})."
                ) from None
            yield number, line
