"""The report folder of an experiment: which folders may be replaced, and writing one whole."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

__all__ = ["REPORT_MARKER", "check_report_folder", "write_folder"]

REPORT_MARKER = ".keras-initlab-report"
_MARKER_TEXT = (
    "This folder is a `keras-initlab` report: a later run with --out here "
    "replaces the whole folder.\n"
)


def check_report_folder(folder: str | os.PathLike[str], argument: str = "folder") -> None:
    """Raise ValueError unless ``folder`` is missing, empty or a previous report.

    A previous report is recognized by its ``REPORT_MARKER`` file; anything else in the
    folder (a user's files, another program's output) is never overwritten or deleted.

    Args:
        folder: the report folder.
        argument: the argument named in the error (``out`` on the command line).

    Example:
    >>> check_report_folder("no/such/folder/yet")
    """
    path = Path(folder)
    if not path.exists():
        return
    if not path.is_dir():
        raise ValueError(
            f"Argument `{argument}` must be a folder. Received: {argument}={str(folder)!r} "
            "(exists and is not a directory)"
        )
    entries = sorted(p.name for p in path.iterdir())
    if entries and REPORT_MARKER not in entries:
        shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
        raise ValueError(
            f"Argument `{argument}` must be a new or empty folder, or a previous "
            f"keras-initlab report (replaced whole). Received: {argument}={str(folder)!r}, "
            f"which holds {len(entries)} other entries ({shown}); choose another folder "
            "with --out"
        )


def _move_in_place(staging: Path, folder: Path) -> None:
    """Put ``staging`` at ``folder``, removing what was there (a previous report) after."""
    if not folder.exists():
        staging.rename(folder)
        return
    old = folder.with_name(f".{folder.name}.old-{secrets.token_hex(4)}")
    folder.rename(old)
    try:
        staging.rename(folder)
    except OSError:
        old.rename(folder)
        raise
    shutil.rmtree(old)


def write_folder(
    folder: str | os.PathLike[str], write_files: Callable[[Path], dict[str, Path]]
) -> dict[str, Path]:
    """Write a report folder whole: ``write_files(staging)`` fills a new folder beside
    ``folder``, which is then moved in place (replacing a previous report) with the
    ``REPORT_MARKER`` file; a failure leaves ``folder`` as it was.

    Args:
        folder: the report folder: missing, empty or a previous report.
        write_files: writes the files into the folder it is given; returns ``{name: path}``.

    Returns:
        ``{name: path}`` under ``folder``.

    Raises:
        ValueError: ``folder`` holds files that are not a previous report.
        OSError: the folder cannot be created or written.

    Example:
    >>> import tempfile
    >>> def write(staging):
    ...     (staging / "a.txt").write_text("a")
    ...     return {"a.txt": staging / "a.txt"}
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     print(write_folder(Path(tmp) / "report", write)["a.txt"].read_text())
    a
    """
    check_report_folder(folder)
    target = Path(os.path.abspath(folder))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.writing-{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        paths = write_files(staging)
        (staging / REPORT_MARKER).write_text(_MARKER_TEXT)
        _move_in_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return {name: Path(folder) / path.relative_to(staging) for name, path in paths.items()}
