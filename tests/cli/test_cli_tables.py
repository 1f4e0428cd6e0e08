"""What the API-client commands print: capacity tables with honest headers, events that keep kinds
and names whole at 80 columns, and `poolvisor --help` in the order a user meets the commands.

The CLI runs in this process against the real app (TestClient standing in for the HTTP client),
on the `make run` demo: 20 hosts, 40 VMs with a recorded day of CPU use."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import typer
from rich.console import Console

from poolvisor.api.app import create_app
from poolvisor.cli import render
from poolvisor.cli.errors import run_guarded
from poolvisor.cli.main import ORDER, PANEL_POOL, OrderedGroup, app
from poolvisor.demo.cluster import seed_demo
from poolvisor.demo.usage import seed_demo_usage
from poolvisor.services import Services, open_services

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Services, str]]:
    svc = open_services(f"sqlite:///{tmp_path_factory.mktemp('tables') / 'd.db'}")
    seed_demo(svc, 20)
    seed_demo_usage(svc, 40)
    token = svc.auth.bootstrap_admin_token()
    assert token is not None
    yield svc, token
    svc.close()


@pytest.fixture
def run(demo: tuple[Services, str], monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> Iterator[Run]:
    svc, token = demo
    web = create_app(svc)
    monkeypatch.setattr(httpx, "Client", lambda base_url, headers, timeout: TestClient(
        web, base_url=base_url, headers=headers, raise_server_exceptions=False))
    monkeypatch.setenv("POOLVISOR_TOKEN", token)

    def invoke(*args: str, columns: int = 160) -> tuple[int, str, str]:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setattr(render, "console", Console(highlight=False))  # reads COLUMNS, as at start-up
        capsys.readouterr()
        code: int | str | None = 0
        try:
            run_guarded(lambda: app(list(args), standalone_mode=True))
        except SystemExit as e:
            code = e.code
        out, err = capsys.readouterr()
        return int(code or 0), out, err

    yield invoke


def _row(out: str, first: str) -> list[str]:
    """The cells of the table row starting with `first` (compact tables: 2+ spaces apart)."""
    line = next(x for x in out.splitlines() if x.startswith(first + " "))
    return re.split(r"\s{2,}", line.strip())


def test_host_list_says_allocated_of_allocatable_free_and_measured(run: Run, demo: tuple[Services, str]
                                                                   ) -> None:
    svc, _ = demo
    hosts = {h.name: h for h in svc.hosts.list_hosts()}
    code, out, err = run("host", "list")
    assert code == 0, err
    assert "used/alloc" not in out
    head = " ".join(out.split("─")[0].split())
    for word in ("vcpu", "alloc", "free", "used", "mem GiB", "work-"):
        assert word in head, head
    assert "allocated of allocatable (capacity × overcommit)" in " ".join(out.split())
    full = hosts["demo-000"]  # best fit filled it: 64 of 64 vCPUs (32 cores x overcommit 2)
    cells = _row(out, "demo-000")
    assert cells[4:10] == [f"{full.allocated['vcpu']:.0f} of 64", f"{full.free['vcpu']:.0f}",
                           render.num(full.used["vcpu"]) if full.used else "?",
                           f"{full.allocated['memory_mib'] / 1024:.0f} of 128",
                           f"{full.free['memory_mib'] / 1024:.0f}", str(full.workloads)]
    assert _row(out, "demo-004")[4:7] == ["0 of 64", "64", "0"]  # a GPU host, kept empty
    # JSON: the same numbers under their own names
    code, out, err = run("host", "list", "--json")
    assert code == 0, err
    by = {h["name"]: h for h in json.loads(out)}
    h = by["demo-000"]
    assert h["allocatable"]["vcpu"] == 64 and h["capacity"]["vcpu"] == 32
    assert h["allocated"]["vcpu"] + h["free"]["vcpu"] == h["allocatable"]["vcpu"]
    assert h["used"]["vcpu"] == pytest.approx(full.used["vcpu"]) and h["used_at"]
    assert h["measured_workloads"] == h["running_workloads"] == full.workloads


def test_unmeasured_and_partly_measured_use_are_marked(run: Run, demo: tuple[Services, str]) -> None:
    svc, _ = demo
    svc.hosts.create_host("solo", {"vcpu": 100, "memory_mib": 65536}, pool="demo")
    try:
        svc.workloads.create_workload("demo", "huge", demand={"vcpu": 70}, pool="demo")  # fits only on solo
        svc.workloads.create_workload("demo", "web9", flavor="medium", pool="demo")  # joins measured VMs
        web9 = svc.workloads.get_workload("demo", "web9").host
        code, out, err = run("host", "list")
        assert code == 0, err
        assert _row(out, "solo")[6] == "–"
        assert _row(out, web9 or "?")[6].startswith("≥")
        code, out, err = run("host", "show", "solo")
        assert "unknown: none of 1 running workload(s) has a recorded sample" in " ".join(out.split())
        code, out, err = run("pool", "show", "demo")
        assert code == 0, err
        assert "of 42 running workload(s) measured; latest sample" in " ".join(out.split())
    finally:
        for w in ("huge", "web9"):
            if w in {x.name for x in svc.workloads.list_workloads("demo")}:
                svc.workloads.delete_workload("demo", w)
        svc.hosts.delete_host("solo")


def test_pool_list_and_show(run: Run) -> None:
    code, out, err = run("pool", "list")
    assert code == 0, err
    cells = _row(out, "demo")
    assert cells[1] == "20" and cells[2].endswith(" of 1280") and cells[7] == "none"
    assert "stranded: free scarce resources" in " ".join(out.split())
    code, out, err = run("pool", "list", "--json")
    (p,) = json.loads(out)
    assert p["stranded"] == {"gpu": 0.0} and p["stranded_hosts"] == []
    assert p["allocatable"] == p["capacity"] and p["used"]["vcpu"] > 0
    assert p["running_workloads"] == p["measured_workloads"] == 40
    code, out, err = run("pool", "show", "demo")
    assert code == 0, err
    for field in ("allocatable", "allocated", "free", "used (measured)", "stranded"):
        assert f"│ {field} " in out, field


def test_pool_shows_gpus_stranded_behind_full_memory(run: Run, demo: tuple[Services, str]) -> None:
    svc, _ = demo
    hog = svc.workloads.create_workload("demo", "hog", demand={"vcpu": 1, "memory_mib": 131072 - 256},
                                        required_labels={"gpu": "true"}, pool="demo")
    try:
        code, out, err = run("pool", "list")
        assert code == 0, err
        assert _row(out, "demo")[7] == "gpu 4"
        code, out, err = run("pool", "show", "demo")
        assert f"gpu 4 on {hog.host}" in out
    finally:
        svc.workloads.delete_workload("demo", "hog")


def _events_whole(out: str, events: list[dict[str, str]], *, one_line: bool = True) -> None:
    """Time, kind and subject of each event unbroken (on one line unless `one_line` is False), its
    message all there (wrapped)."""
    lines = out.splitlines()
    assert all(len(x) <= 80 for x in lines), max(lines, key=len)
    text = " ".join(out.split())
    for e in events:
        if one_line:
            assert any(e["kind"] in x and e["subject"] in x and e["time"][11:19] in x for x in lines), e
        else:
            assert any(e["kind"] in x and e["time"][11:19] in x for x in lines), e
            assert any(x.split() == [e["subject"]] or e["subject"] in x.split() for x in lines), e
        assert all(w in text for w in e["message"].split()), e


def test_events_keep_kinds_and_names_whole_at_80_columns(run: Run, demo: tuple[Services, str]) -> None:
    svc, _ = demo
    svc.workloads.create_workload("demo", "web7", flavor="small", pool="demo")  # long "placed" message
    code, out, err = run("events", "--limit", "20", columns=80)
    assert code == 0, err
    events = json.loads(run("events", "--limit", "20", "--json")[1])
    assert len(events) == 20 and any(len(e["message"]) > 60 for e in events)
    assert out.splitlines()[1].split() == ["time", "kind", "subject", "message"]  # a table; projects
    _events_whole(out, events)  # are all in the subjects here: no project column
    # a name too long for the table's columns: one line per event, the message below it
    svc.workloads.create_workload("demo", "a-rather-long-name-for-a-workload-0123", flavor="small",
                                  pool="demo")
    code, out, err = run("events", "--limit", "20", columns=80)
    assert code == 0, err
    assert out.startswith("Events (UTC): time, kind, subject; the message below")
    _events_whole(out, json.loads(run("events", "--limit", "20", "--json")[1]), one_line=False)


def test_help_lists_commands_in_panels_in_the_readme_order(run: Run) -> None:
    code, out, err = run("--help", columns=100)
    assert code == 0, err
    panels = [m for m in re.findall(r"╭─ (.+?) ─", out) if m != "Options"]
    assert panels == ["Run the server", PANEL_POOL, "Offline tools (no server needed)", "Maintenance"]
    names = re.findall(r"^│ ([a-z][\w-]*) ", out, flags=re.M)
    assert names == list(ORDER)


def test_ordered_group_keeps_room_for_new_commands() -> None:
    """A `token` group added later lands in the pool panel, in its reserved place; an unknown
    command goes last."""
    demo_app = typer.Typer(cls=OrderedGroup)
    for name in ("zzz", "events", "token", "host", "serve"):
        demo_app.command(name=name, rich_help_panel=PANEL_POOL)(lambda: None)
    group = typer.main.get_group(demo_app)
    assert group.list_commands(None) == ["serve", "host", "token", "events", "zzz"]


def test_api_read_models_document_the_new_fields(tmp_path: Path) -> None:
    svc = open_services(f"sqlite:///{tmp_path / 'o.db'}")
    try:
        spec = TestClient(create_app(svc)).get("/openapi.json").json()["components"]["schemas"]
    finally:
        svc.close()
    for model, extra in (("HostOut", {"allocatable", "used", "used_at", "measured_workloads",
                                      "running_workloads"}),
                         ("PoolOut", {"allocatable", "used", "stranded", "stranded_hosts"})):
        props = spec[model]["properties"]
        assert extra <= set(props), model
        assert not extra & set(spec[model].get("required", [])), model  # additions are optional
