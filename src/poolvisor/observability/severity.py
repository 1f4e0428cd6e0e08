"""The severity of an event: info, warning or critical (filterable, and shown by the stream).

A use case may pass one explicitly (alerts do); otherwise it follows from the kind, so the
existing events are classified without each use case restating it: a failure or loss is a
warning, a host failure or a volume's data loss is critical, everything else is info.
"""

from __future__ import annotations

SEVERITIES = ("info", "warning", "critical")
RANK = {s: i for i, s in enumerate(SEVERITIES)}

_BY_KIND = {
    "host.failed": "critical",
    "volume.failed": "critical",  # a segment lost every replica: data is gone (services/volumes.py)
    "workload.lost": "warning",
    "workload.create_failed": "warning",
    "workload.migrate_failed": "warning",
    "workload.batch_failed": "warning",
    "workload.repaired": "warning",
    "task.failed": "warning",
    "task.rolled_back": "warning",
}


def severity_of(kind: str) -> str:
    return _BY_KIND.get(kind, "warning" if kind.endswith(("_failed", ".failed")) else "info")


def check_severity(severity: str) -> str:
    if severity not in RANK:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}")
    return severity
