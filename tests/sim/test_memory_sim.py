"""The memory simulator: balloon reclaim keeps overcommitted hosts backed where the no-balloon
baseline swaps; reservations and working sets are never reclaimed; bad parameters are refused."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.sim.memory import first_fit, simulate_memory, synthetic_activity


def test_balloon_backs_what_the_baseline_cannot() -> None:
    act = synthetic_activity(120, 96, seed=3)
    r = simulate_memory(act, hosts=6, host_mib=65536, overcommit=1.5, reserve=0.25, seed=3)
    assert r.placed == 120
    assert r.no_balloon.unbacked_mib_steps > 0 and r.no_balloon.peak_pressure > 1.0
    assert r.balloon.unbacked_mib_steps == 0 and r.balloon.reclaimed_mib > 0
    assert r.balloon.peak_pressure <= 0.9 + 1e-9


def test_reservations_bound_what_reclaim_can_do() -> None:
    # everything reserved: nothing reclaimable, the host cannot back the overcommit either way
    act = np.full((40, 10), 0.0)
    r = simulate_memory(act, hosts=2, host_mib=32768, overcommit=2.0, reserve=1.0, base=0.0)
    assert r.balloon.unbacked_mib_steps > 0 and r.balloon.reclaimed_mib == 0
    # nothing reserved, idle guests: reclaim takes everything above the working set
    r = simulate_memory(act, hosts=2, host_mib=32768, overcommit=2.0, reserve=0.0, base=0.1)
    assert r.balloon.unbacked_mib_steps == 0


def test_first_fit_respects_overcommit() -> None:
    sizes = np.array([4096.0] * 10)
    host = first_fit(sizes, 8192, 1.5, 2)
    assert host.tolist() == [0, 0, 0, 1, 1, 1, -1, -1, -1, -1]


def test_bad_parameters() -> None:
    with pytest.raises(InvalidInputError):
        simulate_memory(np.zeros((2, 2)), overcommit=0.5)
    with pytest.raises(InvalidInputError):
        simulate_memory(np.zeros(3))
