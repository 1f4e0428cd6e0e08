"""VM selection policies: MMT, MU, RS (seeded), MC."""

from __future__ import annotations

import numpy as np
import pytest

from poolvisor.domain.errors import InvalidInputError
from poolvisor.policies.balancing.selection import Selector, max_correlation


def _args(ram: list[float], util: list[float]) -> tuple[np.ndarray, ...]:
    n = len(ram)
    return np.array(ram), np.array(util), np.zeros((n, 30)), np.zeros(n, dtype=np.int64)


def test_mmt_smallest_ram_first_on_ties() -> None:
    assert Selector("mmt").pick(*_args([1740, 613, 870, 613], [0.1, 0.9, 0.2, 0.3])) == 1


def test_mu_lowest_utilization() -> None:
    assert Selector("mu").pick(*_args([1740, 613, 870], [0.4, 0.9, 0.2])) == 2


def test_rs_is_seeded() -> None:
    a = [Selector("rs", seed=3).pick(*_args([1.0] * 7, [0.5] * 7)) for _ in range(3)]
    s = Selector("rs", seed=3)
    b = [s.pick(*_args([1.0] * 7, [0.5] * 7)) for _ in range(20)]
    assert a == [b[0]] * 3
    assert len(set(b)) > 1 and all(0 <= k < 7 for k in b)


def test_mc_picks_the_vm_explained_by_the_others() -> None:
    rng = np.random.default_rng(0)
    n, m = 4, 30
    hist = rng.random((n, m))
    hist[3] = 0.8 * hist[2] + 0.05 * rng.random(m)  # VMs 2 and 3 move together, 0 and 1 are noise
    assert max_correlation(hist, np.full(n, m), np.ones(n)) in (2, 3)
    # too little history: falls back to MMT
    assert max_correlation(hist, np.full(n, 3), np.array([5.0, 1.0, 5.0, 5.0])) == 1


def test_unknown_selector() -> None:
    with pytest.raises(InvalidInputError):
        Selector("xx")
