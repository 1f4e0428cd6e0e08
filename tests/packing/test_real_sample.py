"""A bounded run over real Panigrahy instances, checked against the published optima."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import require_shared_data
from poolvisor.bench.packing import read_known, select, summarize
from poolvisor.policies.packing import cpsat
from poolvisor.policies.packing.feasibility import check_assignment
from poolvisor.policies.packing.registry import solve
from poolvisor.traces.vbp import iter_vbp_texts, parse_vbp


@pytest.fixture(scope="module")
def sample() -> list[tuple[str, str, str]]:
    shared = require_shared_data()
    known = read_known(shared / "vbp" / "Panigrahy_summary_known.csv")
    small = [x for x in iter_vbp_texts(shared / "vbp" / "Panigrahy_instances.tar.gz")
             if "_20_" in x[0] and known[x[0]].opt > 0]
    return select(small, None, 18)  # spread over classes 1-9 and 3/5/10 dimensions


def test_sample_against_known_optima(shared_data: Path, sample: list[tuple[str, str, str]]) -> None:
    if not cpsat.available():
        pytest.skip("OR-Tools not installed (solver extra)")
    known = read_known(shared_data / "vbp" / "Panigrahy_summary_known.csv")
    proved = 0
    for name, source, text in sample:
        inst = parse_vbp(text, source, name)
        opt = known[name].opt
        h = solve(inst.items, inst.capacity, "heuristics")
        check_assignment(inst.items, inst.capacity, h.assignment)
        assert opt <= h.bins <= opt + 1, name
        p = solve(inst.items, inst.capacity, "cpsat", time_limit=3.0)
        assert p.lower_bound <= opt <= p.bins <= h.bins, name
        if p.optimal:  # a proof must agree with the published optimum
            assert p.bins == opt, name
            proved += 1
    assert proved >= len(sample) // 2


def test_summary_against_published(shared_data: Path, sample: list[tuple[str, str, str]]) -> None:
    known = read_known(shared_data / "vbp" / "Panigrahy_summary_known.csv")
    results = []
    for name, source, text in sample[:6]:
        inst = parse_vbp(text, source, name)
        p = solve(inst.items, inst.capacity, "heuristics")
        results.append({"instance": name, "class": int(name[5]), "dimensions": inst.items.shape[1],
                        "bins": p.bins, "optimal": p.optimal, "wall_s": p.wall_s})
    rows = summarize(results, known, "class")
    assert sum(r["instances"] for r in rows) == 6
    for r in rows:
        assert r["ours_over_lb_pct"] >= 0
        assert r["fewer_bins_than_best_overall"] + r["equal"] + r["more_bins"] == r["instances"]
        assert r["total_bins"] >= r["total_bins_best_overall"] - r["instances"]
