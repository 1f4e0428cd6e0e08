"""docs/prometheus/alerts.yml and docs/grafana/poolvisor.json: they parse, and every metric their
expressions name is one /metrics exposes (so a renamed metric fails here, not in production)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

DOCS = Path(__file__).resolve().parents[2] / "docs"
BUILTIN = {"up"}  # Prometheus' own per-target series
_SELECTOR = re.compile(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{")
_PREFIXED = re.compile(r"\b((?:poolvisor|process|python)_[a-zA-Z0-9_:]*)")


def metric_names(expr: str) -> set[str]:
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(_SELECTOR.findall(without_strings)) | set(_PREFIXED.findall(without_strings))


@pytest.fixture
def exposed(client: Any, admin: dict[str, str]) -> set[str]:
    """Every family and sample name of an admin scrape (after one placement and one request)."""
    client.post("/v1/workloads", json={"name": "d1", "flavor": "small", "project": "demo"}, headers=admin)
    names: set[str] = set()
    for fam in text_string_to_metric_families(client.get("/metrics", headers=admin).text):
        names.add(fam.name)
        names.update(s.name for s in fam.samples)
        if fam.type == "counter":
            names.add(fam.name + "_total")
    return names


def _balanced(expr: str) -> bool:
    depth = 0
    for c in expr:
        depth += {"(": 1, ")": -1}.get(c, 0)
        if depth < 0:
            return False
    return depth == 0


def test_alert_rules_parse_and_name_existing_metrics(exposed: set[str]) -> None:
    doc = yaml.safe_load((DOCS / "prometheus" / "alerts.yml").read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert len(rules) >= 8 and len({r["alert"] for r in rules}) == len(rules)
    for r in rules:
        assert set(r) <= {"alert", "expr", "for", "labels", "annotations"}, r
        assert r["labels"]["severity"] in ("warning", "critical") and r["annotations"]["summary"]
        expr = str(r["expr"])
        assert _balanced(expr), r["alert"]
        names = metric_names(expr)
        assert names, r["alert"]
        assert names - BUILTIN <= exposed, (r["alert"], names - BUILTIN - exposed)


def test_grafana_dashboard_names_existing_metrics(exposed: set[str]) -> None:
    dash = json.loads((DOCS / "grafana" / "poolvisor.json").read_text())
    targets = [t for p in dash["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 10 and dash["uid"] and dash["title"]
    ids = [p["id"] for p in dash["panels"]]
    assert len(set(ids)) == len(ids)
    for t in targets:
        names = metric_names(t["expr"])
        assert names and _balanced(t["expr"]), t
        assert names - BUILTIN <= exposed, (t["expr"], names - BUILTIN - exposed)


def test_the_name_extraction_catches_unknown_metrics(exposed: set[str]) -> None:
    assert metric_names('sum(rate(poolvisor_nope_total{kind="x"}[5m]))') == {"poolvisor_nope_total"}
    assert "poolvisor_nope_total" not in exposed
    assert metric_names('up{job="poolvisor"} == 0') == {"up"}
