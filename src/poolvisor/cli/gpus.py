"""GPU devices on the command line: `--gpus 4xA100:40960,2xT4:16384` and how devices and a
workload's shares are shown."""

from __future__ import annotations

import re
from typing import Any

from poolvisor.domain.errors import InvalidInputError

_GROUP = re.compile(r"^(?:(\d+)x)?([A-Za-z0-9][A-Za-z0-9._+-]*)?(?::(\d+(?:\.\d+)?))?$")


def parse_gpus(text: str) -> list[dict[str, Any]]:
    """'4xA100:40960,T4:16384' -> [{count 4, model A100, memory_mib 40960}, {count 1, model T4, ...}]
    (COUNTxMODEL:MEMORY_MIB, each part optional but one); one clear error otherwise."""
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _GROUP.fullmatch(part)
        if m is None or not any(m.groups()):
            raise InvalidInputError(
                f"--gpus: expected COUNTxMODEL:MEMORY_MIB (e.g. 4xA100:40960), got {part!r}")
        count, model, mem = m.groups()
        out.append({"count": int(count) if count else 1, "model": model or "",
                    "memory_mib": float(mem) if mem else 0.0})
    if not out:
        raise InvalidInputError(f"--gpus: expected COUNTxMODEL:MEMORY_MIB groups, got {text!r}")
    return out


def devices_text(gpus: list[dict[str, Any]]) -> str:
    """One host's devices: '0 A100 40960 MiB 300/1000 milli; 1 ...'."""
    return "; ".join(f"{g['device']} {g.get('model') or 'gpu'}"
                     f"{' ' + format(g['memory_mib'], 'g') + ' MiB' if g.get('memory_mib') else ''}"
                     f" {g['allocated_milli']}/1000 milli" for g in gpus) or "–"


def shares_text(gpus: list[dict[str, Any]]) -> str:
    """A workload's shares: 'h1 GPU 0 (A100): 300 milli; ...'."""
    return "; ".join(f"{g['host']} GPU {g['device']}{' (' + g['model'] + ')' if g.get('model') else ''}: "
                     f"{g['milli']} milli" for g in gpus) or "–"
