"""Host power models: SPECpower tables (11 points, 0..100 % load) and linear models.

``power(u)`` reproduces CloudSim's PowerModelSpecPower arithmetic operation by operation, so that
ties between hosts in the power-aware best fit are broken exactly as CloudSim breaks them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from poolvisor.domain.errors import InvalidInputError

#: SPECpower watts at 0, 10, ..., 100 % (CloudSim PowerModelSpecPowerHpProLiantMl110G4Xeon3040 / G5Xeon3075).
HP_ML110_G4 = (86.0, 89.4, 92.6, 96.0, 99.5, 102.0, 106.0, 108.0, 112.0, 114.0, 117.0)
HP_ML110_G5 = (93.7, 97.0, 101.0, 105.0, 110.0, 116.0, 121.0, 125.0, 129.0, 133.0, 135.0)


@dataclass(frozen=True)
class PowerTable:
    """A family of power models stacked as rows: ``table[m]`` holds 11 SPECpower points of model m.

    A linear model (idle watts to max watts) is stored as its 11 interpolation points, which is
    exact because the table is interpolated linearly between 10 % steps.
    """

    table: np.ndarray  # (M, 11)
    _flat: np.ndarray = field(init=False, repr=False, compare=False)
    _delta: np.ndarray = field(init=False, repr=False, compare=False)
    _flat_l: list[float] = field(init=False, repr=False, compare=False)
    _delta_l: list[float] = field(init=False, repr=False, compare=False)

    @classmethod
    def of(cls, *models: tuple[float, ...]) -> PowerTable:
        t = np.asarray(models, dtype=np.float64)
        if t.ndim != 2 or t.shape[1] != 11:
            raise InvalidInputError("a SPECpower model needs exactly 11 points (0..100 % in 10 % steps)")
        return cls(t)

    @staticmethod
    def linear(idle_w: float, max_w: float) -> tuple[float, ...]:
        return tuple(idle_w + (max_w - idle_w) * i / 10 for i in range(11))

    def __post_init__(self) -> None:
        t = self.table
        flat = t.ravel().copy()
        nxt = np.concatenate([t[:, 1:], t[:, -1:]], axis=1).ravel()
        object.__setattr__(self, "_flat", flat)
        object.__setattr__(self, "_delta", (nxt - flat) / 10)  # CloudSim's (power2 - power1) / 10
        object.__setattr__(self, "_flat_l", flat.tolist())
        object.__setattr__(self, "_delta_l", self._delta.tolist())

    def power(self, model: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Watts of hosts with model index ``model`` at utilization ``u`` in [0, 1] (same shapes).

        Same operations as CloudSim's PowerModelSpecPower.getPower: ``p1 + delta * (u - i1/10) * 100``
        with i1 = floor(10u), delta = 0 when 10u is an integer (then also ``u % 0.1 == 0`` cases).
        Hot path of the best-fit search: callers guarantee the range (see :meth:`checked_power`).
        """
        u10 = u * 10
        i1 = u10.astype(np.intp)  # floor for u >= 0
        step = np.ceil(u10) - i1  # 0.0 or 1.0: exact multiplier of delta
        idx = model * 11 + i1
        return self._flat[idx] + self._delta[idx] * step * (u - i1 / 10) * 100

    def power1(self, model: int, u: float) -> float:
        """Scalar :meth:`power` (identical IEEE operations on Python floats)."""
        u10 = u * 10
        i1 = int(u10)
        idx = model * 11 + i1
        return self._flat_l[idx] + self._delta_l[idx] * (math.ceil(u10) - i1) * (u - i1 / 10) * 100

    @property
    def flat(self) -> np.ndarray:
        return self.table.ravel()

    def checked_power(self, model: np.ndarray, u: np.ndarray) -> np.ndarray:
        """:meth:`power` with CloudSim's range check (a utilization outside [0, 1] is an error)."""
        u = np.asarray(u, dtype=np.float64)
        if u.size and (u.min() < 0 or u.max() > 1):
            raise InvalidInputError("utilization outside [0, 1] for a power model")
        return self.power(np.asarray(model), u)

    def max_power(self, model: np.ndarray) -> np.ndarray:
        return self.table[model, 10]


def clip_utilization(u: np.ndarray) -> np.ndarray:
    """CloudSim's getUtilizationOfCpu: values in (1, 1.01) count as 1."""
    return np.where((u > 1) & (u < 1.01), 1.0, u)
