"""The one action type every planner returns: migrate, restart, power on/off (and place).

Balancing (overload relief, underload consolidation, imbalance reduction), recovery after a host
failure and batch placement all answer with a list of :class:`Action`; the live services turn
them into tasks, the simulators into migrations in flight. An action names its workload and hosts
by index (a row of the view's workload table, host indices of its state) so that the simulators'
hot loops never touch strings; :meth:`Action.to_dict` renders names for people.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

MIGRATE, RESTART, POWER_ON, POWER_OFF, PLACE = "migrate", "restart", "power_on", "power_off", "place"
KINDS = (MIGRATE, RESTART, POWER_ON, POWER_OFF, PLACE)


_NO_FIGURES: Mapping[str, float] = {}


class Explanation(NamedTuple):
    """Why: the rule that fired, the figures it fired on, the alternatives it weighed.
    (NamedTuples: a simulator plans tens of thousands of these a day; they must be cheap.)"""

    rule: str
    figures: Mapping[str, float] = _NO_FIGURES
    alternatives: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "figures": dict(self.figures), "alternatives": list(self.alternatives)}


class Action(NamedTuple):
    """``kind`` of ``workload`` (row; -1 for a host action) from host ``src`` to ``dst`` (-1: none:
    a new placement has no source, a workload that fits nowhere no destination, power_on/off name
    their host as ``dst``/``src``)."""

    kind: str
    workload: int
    src: int
    dst: int
    explanation: Explanation

    @property
    def rule(self) -> str:
        return self.explanation.rule

    def to_dict(self, workloads: Sequence[object], hosts: Sequence[str]) -> dict[str, Any]:
        """Names instead of indices: ``workloads[row]``, ``hosts[index]`` (None for -1)."""
        return {
            "kind": self.kind,
            "workload": None if self.workload < 0 else str(workloads[self.workload]),
            "from": None if self.src < 0 else hosts[self.src],
            "to": None if self.dst < 0 else hosts[self.dst],
            **self.explanation.to_dict(),
        }


class Actions(list[Action]):
    """A plan: the actions in order, plus notes on what was considered and not done."""

    def __init__(self, actions: Sequence[Action] = (), notes: Sequence[str] = ()) -> None:
        super().__init__(actions)
        self.notes: list[str] = list(notes)

    def of_kind(self, kind: str) -> list[Action]:
        return [a for a in self if a.kind == kind]
