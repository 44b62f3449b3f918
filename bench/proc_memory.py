"""Resident memory of a server process and its children (a gunicorn master and its workers), read
from /proc, for the benches that watch what an API holds while it works."""

from __future__ import annotations

from pathlib import Path


def tree_memory_mib(pid: int, fields: tuple[str, ...]) -> dict[str, float]:
    """The given /proc/<pid>/status fields (e.g. ``VmRSS``, ``RssAnon``, ``RssFile``), summed over the
    process and its children, in MiB; a child that exits meanwhile is skipped."""
    totals = dict.fromkeys(fields, 0)
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                name, *value = line.split()
                if name.rstrip(":") in totals:
                    totals[name.rstrip(":")] += int(value[0])
        except FileNotFoundError:
            continue
    return {name: kib / 1024 for name, kib in totals.items()}
