"""Crash-safe file writing: write to a temporary name, then rename.

Every file the project writes for later reading (datasets and their shards,
termination negatives, agents, checkpoints, reports, plots, videos, logs'
headers) goes through :func:`atomic_path`: the content is written to a
temporary sibling, which replaces the target only once complete, so readers see
the old file or the new one, never a part, and a failed write leaves the target
as it was and no temporary file behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def temporary_name(path: Path, keep_suffix: bool = False) -> Path:
    """``<name>.tmp``, or ``<stem>.tmp<suffix>`` with ``keep_suffix`` (for writers that read the format from it)."""
    return path.with_name(path.stem + ".tmp" + path.suffix) if keep_suffix else path.with_name(path.name + ".tmp")


@contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False, tmp: str | Path | None = None) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on failure it is removed.

    ``tmp`` names the temporary path explicitly (it must be on the same file
    system); a temporary directory is removed with its contents.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tmp) if tmp is not None else temporary_name(path, keep_suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        elif tmp.exists():
            tmp.unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a part."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def atomic_write_json(path: str | Path, data) -> Path:
    """``data`` as indented JSON, written atomically."""
    return atomic_write_text(path, json.dumps(data, indent=1))


def replace_dir(tmp: str | Path, target: str | Path) -> Path:
    """Put the finished directory ``tmp`` in place of ``target`` (moved aside to ``<target>.old`` first, then removed)."""
    import shutil

    tmp, target = Path(tmp), Path(target)
    old = target.with_name(target.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    tmp.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target


def atomic_save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically (the format from ``path``'s suffix) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        with atomic_path(path, keep_suffix=True) as tmp:  # matplotlib reads the format from the suffix
            fig.savefig(tmp, dpi=dpi)
    finally:
        plt.close(fig)
    return path


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


__all__ = ["atomic_path", "atomic_write_text", "atomic_write_json", "file_sha256", "temporary_name"]
