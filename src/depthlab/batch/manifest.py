"""The results manifest of a batch: ``<out>/depthlab-results.jsonl``, one JSON record per item.

Record fields: ``item`` (the item key), ``status`` (``ok`` or ``failed``), ``method`` (the method
that ran), ``settings`` (what decides the outputs: :meth:`BatchOptions.recorded`), ``digest``
(hash of ``settings``), ``formats`` and ``outputs`` (paths relative to ``out``) that the item's
finished outputs hold, ``written`` (the files this run wrote), ``seconds`` and ``error``.

While a run goes, every process (or Ray worker) appends its records to its own part file
``<out>/.depthlab-results.jsonl.part-<time>-<id>`` and flushes each line, so a run that is
interrupted or killed loses only the items in flight. :func:`merge` folds the parts into the
manifest (a later record of an item replaces an earlier one; records sorted by item) with an
atomic rename; :func:`load` reads the manifest and any parts not merged yet.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from depthlab.batch.worklist import RESULTS_NAME

__all__ = ["PartWriter", "load", "merge", "manifest_path"]


def manifest_path(out: str | os.PathLike) -> Path:
    return Path(out) / RESULTS_NAME


def _parts(out: Path) -> list[Path]:
    return sorted(out.glob(f".{RESULTS_NAME}.part-*"))


def _read(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the last line of a part cut short by a killed process
        if isinstance(record, dict) and "item" in record:
            records.append(record)
    return records


def load(out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """``{item key: latest record}`` from the manifest and its unmerged parts (oldest first)."""
    out = Path(out)
    latest: dict[str, dict[str, Any]] = {}
    for path in [manifest_path(out), *_parts(out)]:
        for record in _read(path):
            latest[record["item"]] = record
    return latest


def merge(out: str | os.PathLike) -> Path:
    """Fold the part files into the manifest (atomic), delete the merged parts, return its path."""
    out = Path(out)
    parts = _parts(out)
    target = manifest_path(out)
    if not parts and target.exists():
        return target
    latest = load(out)
    tmp = out / f".{RESULTS_NAME}.merging-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as handle:
        for key in sorted(latest):
            handle.write(json.dumps(latest[key], sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, target)
    for part in parts:
        part.unlink(missing_ok=True)
    return target


class PartWriter:
    """Appends records to this process's own part file, one flushed line per record."""

    def __init__(self, out: str | os.PathLike, tag: str = "") -> None:
        name = f".{RESULTS_NAME}.part-{time.time_ns():020d}-{os.getpid()}{'-' + tag if tag else ''}"
        self.path = Path(out) / name
        self._handle: Any = None

    def write(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)
        self._handle.write(json.dumps(record, sort_keys=True) + "\n")
        self._handle.flush()
        os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
