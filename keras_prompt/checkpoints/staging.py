"""Write a directory of files all at once: into a temporary directory beside
the target, renamed into place only when complete, so an interrupted or
failed write never leaves a half-written checkpoint or adapter that a loader
would later half-load."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["require_new_dir", "staged_dir"]


def require_new_dir(directory: str | os.PathLike) -> Path:
    """``directory`` as a Path; refuses an existing non-empty one."""
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise FileExistsError(
            f"Output directory {directory} already exists and is not empty; "
            "expected a new or empty directory, refusing to overwrite it."
        )
    return directory


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """A temporary directory beside ``target``, renamed to it on success.

    Example:

    ```python
    from pathlib import Path
    from keras_prompt.checkpoints.staging import staged_dir
    with staged_dir(Path("/tmp/out_dir")) as staging:
        (staging / "config.json").write_text("{}")
    ```
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    )
    try:
        yield staging
        # mkdtemp creates 0700 directories; give the result normal permissions.
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)
        if target.is_dir():
            target.rmdir()  # Empty (require_new_dir); rename needs it gone.
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
