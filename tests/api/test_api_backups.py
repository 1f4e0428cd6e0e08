"""Backups over HTTP: targets (admins write), take (202 + task), list, show, schedules, and a
restore onto another host after the original host failed; refusals are declared 4xx."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from taskwait import wait_task

from poolvisor.services import Services


def test_backup_and_restore_after_host_failure_over_http(sim_client: Any, admin: dict[str, str],
                                                         svc: Services, member: Any, tmp_path: Path) -> None:
    c = sim_client
    (tmp_path / "nas").mkdir()
    mine = member("demo")
    r = c.post("/v1/backup-targets", json={"name": "nas", "path": str(tmp_path / "nas")}, headers=mine)
    assert r.status_code == 403
    r = c.post("/v1/backup-targets", json={"name": "nas", "path": "rel"}, headers=admin)
    assert r.status_code == 422 and "path" in r.json()["message"]
    r = c.post("/v1/backup-targets", json={"name": "nas", "path": str(tmp_path / "nas")}, headers=admin)
    assert r.status_code == 201 and r.json()["backups"] == 0, r.text
    assert [t["name"] for t in c.get("/v1/backup-targets", headers=mine).json()] == ["nas"]

    w = svc.workloads.create_workload("demo", "vm1", flavor="small")
    r = c.post("/v1/workloads/vm1/backups", json={"name": "b1"}, headers=mine)
    assert r.status_code == 202 and r.json()["kind"] == "backup" and r.headers["Location"], r.text
    t = wait_task(c, mine, r)
    assert t["state"] == "succeeded" and t["progress"] == 1.0, t
    [b] = c.get("/v1/workloads/vm1/backups", headers=mine).json()
    assert (b["name"], b["state"], b["target"], b["host"]) == ("b1", "ready", "nas", w.host)
    assert len(b["sha256"]) == 64 and b["spec"]["flavor"] == "small"
    assert c.get("/v1/workloads/vm1/backups/b1", headers=mine).json()["sha256"] == b["sha256"]
    assert c.post("/v1/workloads/vm1/backups", json={"name": "b1"}, headers=mine).status_code == 409
    assert c.post("/v1/workloads/vm1/backups", json={"name": "bad name"}, headers=mine).status_code == 422
    assert c.post("/v1/workloads/vm1/backups", json={"target": "nope"}, headers=mine).status_code == 404
    assert c.get("/v1/workloads/vm1/backups/nope", headers=mine).status_code == 404
    assert c.get("/v1/workloads/vm1/backups", headers=member("team-x")).status_code == 404
    assert c.post("/v1/workloads/vm1/backups/b1/restore", headers=mine).status_code == 409  # it runs

    # the host dies: the workload comes back elsewhere, placed by the pipeline
    assert c.post(f"/v1/sim/hosts/{w.host}/fail", headers=admin).status_code == 200
    r = c.post("/v1/workloads/vm1/backups/b1/restore", json={}, headers=mine)
    assert r.status_code == 202 and r.json()["kind"] == "backup_restore", r.text
    t = wait_task(c, mine, r)
    assert t["state"] == "succeeded" and t["result"]["from_host"] == w.host, t
    now = c.get("/v1/workloads/vm1", headers=mine).json()
    assert now["state"] == "running" and now["host"] not in (None, w.host)
    r = c.post("/v1/workloads/vm1/backups/b1/restore", json={"as_name": "vm1b", "host": "nohost"},
               headers=mine)
    assert r.status_code == 404

    # the workload deleted: its backups stay reachable under its name
    assert c.delete("/v1/workloads/vm1", headers=mine).status_code == 204
    assert [b["name"] for b in c.get("/v1/workloads/vm1/backups", params={"project": "demo"},
                                     headers=admin).json()] == ["b1"]

    # schedules
    svc.workloads.create_workload("demo", "vm2", flavor="small")
    r = c.put("/v1/backup-schedules", json={"workload": "vm2", "every_s": 21600, "keep": 7}, headers=mine)
    assert r.status_code == 200 and r.json()["keep"] == 7 and r.json()["scope"] == "workload", r.text
    sid = r.json()["id"]
    r = c.put("/v1/backup-schedules", json={"workload": "vm2", "group": "g", "every_s": 60, "keep": 1},
              headers=mine)
    assert r.status_code == 422
    r = c.put("/v1/backup-schedules", json={"workload": "vm2", "every_s": 5, "keep": 1}, headers=mine)
    assert r.status_code == 422
    r = c.put("/v1/backup-schedules", json={"group": "nogroup", "every_s": 600, "keep": 1}, headers=mine)
    assert r.status_code == 404
    assert [s["id"] for s in c.get("/v1/backup-schedules", headers=mine).json()] == [sid]
    assert c.get("/v1/backup-schedules", headers=member("team-x")).json() == []
    assert c.delete(f"/v1/backup-schedules/{sid}", headers=member("team-x")).status_code == 404
    assert c.delete("/v1/backup-targets/nas", headers=admin).status_code == 409  # in use
    assert c.delete(f"/v1/backup-schedules/{sid}", headers=mine).status_code == 204
    r = c.delete("/v1/workloads/vm1/backups/b1", params={"project": "demo"}, headers=admin)
    assert r.status_code == 204
    assert not list((tmp_path / "nas").rglob("*.img"))
    assert c.delete("/v1/backup-targets/nas", headers=admin).status_code == 204
    assert svc.repair.check().ok
