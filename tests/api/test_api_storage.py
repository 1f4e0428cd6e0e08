"""The storage API: pools and devices (admin), volumes (per project), rebalance as a task."""

from __future__ import annotations

from typing import Any

from taskwait import wait_task


def _pool(client: Any, admin: dict[str, str], devices: int = 4, **body: Any) -> None:
    r = client.post("/v1/storage-pools", json={"name": "sp", "replicas": 2, **body}, headers=admin)
    assert r.status_code == 201, r.text
    for i in range(devices):
        r = client.post("/v1/storage-pools/sp/devices", json={"name": f"d{i}", "capacity_mib": 50_000,
                                                             "domain": f"rack{i}"}, headers=admin)
        assert r.status_code == 201, r.text
        assert r.json()["device_class"] == "ssd"


def test_pool_volume_lifecycle(client: Any, admin: dict[str, str]) -> None:
    _pool(client, admin)
    r = client.post("/v1/volumes", json={"name": "v", "pool": "sp", "size_mib": 3000, "thin": False,
                                         "project": "demo"}, headers=admin)
    assert r.status_code == 201, r.text
    v = r.json()
    assert (v["segments"], v["replicas"], v["live_replicas"], v["state"]) == (3, 2, 2, "available")
    assert sum(v["devices"].values()) == 6000
    pool = client.get("/v1/storage-pools/sp", headers=admin).json()
    assert pool["space"]["used_mib"] == 6000 and pool["space"]["usable_capacity_mib"] == 100_000
    assert pool["volumes"] == 1 and len(pool["devices"]) == 4
    r = client.post("/v1/volumes/v/resize", json={"size_mib": 4000}, headers=admin)
    assert r.status_code == 200 and r.json()["size_mib"] == 4000
    assert client.post("/v1/volumes/v/resize", json={"size_mib": 10}, headers=admin).status_code == 409
    r = client.post("/v1/volumes/v/snapshot", json={"name": "s"}, headers=admin)
    assert r.status_code == 201 and r.json()["snapshot_of"] == "v" and r.json()["state"] == "snapshot", r.text
    assert client.post("/v1/volumes/s/resize", json={"size_mib": 5000}, headers=admin).status_code == 409
    assert client.delete("/v1/volumes/s", headers=admin).status_code == 204
    r = client.post("/v1/workloads", json={"name": "vm", "flavor": "small", "project": "demo"}, headers=admin)
    assert r.status_code == 201, r.text
    r = client.post("/v1/volumes/v/attach", json={"workload": "vm"}, headers=admin)
    assert r.status_code == 200 and r.json()["attached_to"] == "vm"
    assert client.delete("/v1/volumes/v", headers=admin).status_code == 409
    assert client.post("/v1/volumes/v/detach", headers=admin).json()["state"] == "available"
    assert client.post("/v1/volumes/v/detach", headers=admin).status_code == 409
    assert client.delete("/v1/storage-pools/sp", headers=admin).status_code == 409
    assert client.delete("/v1/volumes/v", headers=admin).status_code == 204
    assert client.get("/v1/volumes/v", headers=admin).status_code == 404
    assert client.delete("/v1/storage-pools/sp", headers=admin).status_code == 204


def test_device_failure_and_join_rebalance_through_a_task(client: Any, admin: dict[str, str]) -> None:
    _pool(client, admin)
    assert client.post("/v1/volumes", json={"name": "v", "pool": "sp", "size_mib": 20 * 1024, "thin": False,
                                            "project": "demo"}, headers=admin).status_code == 201
    r = client.put("/v1/storage-pools/sp/devices/d1/state", json={"state": "failed"}, headers=admin)
    assert r.status_code == 200 and r.json()["state"] == "failed"
    assert client.get("/v1/storage-pools/sp", headers=admin).json()["under_replicated"] > 0
    plan = client.post("/v1/storage-pools/sp/rebalance?dry_run=true", headers=admin)
    assert plan.status_code == 200
    p = plan.json()
    assert p["segments"] == p["copies"] > 0 and p["lost"] == 0 and p["copy_mib"] == 1024 * p["copies"]
    task = wait_task(client, admin, client.post("/v1/storage-pools/sp/rebalance", headers=admin))
    assert task["state"] == "succeeded" and task["kind"] == "storage-rebalance", task
    assert task["result"]["copies"] == p["copies"]
    pool = client.get("/v1/storage-pools/sp", headers=admin).json()
    assert pool["under_replicated"] == 0
    assert client.get("/v1/volumes/v", headers=admin).json()["live_replicas"] == 2
    r = client.put("/v1/storage-pools/sp/devices/d1/state", json={"state": "up"}, headers=admin)
    assert r.status_code == 409
    assert client.delete("/v1/storage-pools/sp/devices/d1", headers=admin).status_code == 204
    assert client.delete("/v1/storage-pools/sp/devices/d0", headers=admin).status_code == 409  # holds data


def test_bad_bodies_and_space_limits(client: Any, admin: dict[str, str]) -> None:
    _pool(client, admin, devices=2, oversubscription=2.0)
    for body in ({"name": "x", "pool": "sp", "size_mib": 0}, {"name": "x", "pool": "sp", "size_mib": "1"},
                 {"name": "x", "pool": "sp", "size_mib": 1, "thin": "yes"},
                 {"name": "x", "pool": "sp", "size_mib": 1, "replicas": 9},
                 {"name": "x", "pool": "sp", "size_mib": 1, "device_class": "a" * 17}):
        assert client.post("/v1/volumes", json=body, headers=admin).status_code == 422, body
    r = client.post("/v1/volumes", json={"name": "x", "pool": "sp", "size_mib": 60_000, "thin": False},
                    headers=admin)
    assert r.status_code == 409 and "thick volume needs" in r.json()["message"]
    r = client.post("/v1/volumes", json={"name": "x", "pool": "nope", "size_mib": 1}, headers=admin)
    assert r.status_code == 404
    r = client.post("/v1/volumes", json={"name": "x", "pool": "sp", "size_mib": 1, "replicas": 3},
                    headers=admin)
    assert r.status_code == 409 and "failure domain" in r.json()["message"]


def test_members_see_only_their_volumes_and_cannot_touch_pools(client: Any, admin: dict[str, str],
                                                               member: Any) -> None:
    _pool(client, admin)
    a, b = member("proj-a"), member("proj-b")
    for who in (a, b):
        r = client.post("/v1/volumes", json={"name": "v", "pool": "sp", "size_mib": 10}, headers=who)
        assert r.status_code == 201, r.text
    assert [v["project"] for v in client.get("/v1/volumes", headers=a).json()] == ["proj-a"]
    assert client.get("/v1/volumes/v", headers=admin).status_code == 409  # ambiguous across projects
    assert client.get("/v1/volumes/v?project=proj-b", headers=admin).json()["project"] == "proj-b"
    assert client.get("/v1/volumes/v?project=proj-b", headers=a).status_code == 404
    assert client.post("/v1/storage-pools", json={"name": "mine"}, headers=a).status_code == 403
    assert client.post("/v1/storage-pools/sp/rebalance", headers=a).status_code == 403
    assert client.get("/v1/storage-pools/sp", headers=a).status_code == 200


def test_dir_devices_hold_bytes_and_scrub_repairs_them(client: Any, admin: dict[str, str], svc: Any,
                                                       tmp_path: Any) -> None:
    from poolvisor.storage import objects as ob

    assert client.post("/v1/storage-pools", json={"name": "sp", "replicas": 2, "segment_mib": 4},
                       headers=admin).status_code == 201
    for i in range(2):
        r = client.post("/v1/storage-pools/sp/devices", json={"name": f"d{i}", "capacity_mib": 100,
                                                             "path": str(tmp_path / f"d{i}")}, headers=admin)
        assert r.status_code == 201 and r.json()["path"] == str(tmp_path / f"d{i}"), r.text
    r = client.post("/v1/storage-pools/sp/devices", json={"name": "rel", "capacity_mib": 100, "path": "rel"},
                    headers=admin)
    assert r.status_code == 422
    svc.volumes.create_volume("demo", "v", "sp", 8)
    svc.volumes.write_data("demo", "v", 0, b"x" * 1000)
    victim = next(tmp_path.glob("d0/objects/*/0000000000"))
    victim.write_bytes(b"garbage")
    r = client.post("/v1/storage-pools/sp/scrub", headers=admin)
    assert r.status_code == 200 and r.json()["repaired"] == 1 and r.json()["lost"] == 0, r.text
    assert ob.read(tmp_path / "d0", victim.parent.name, 0) is not None
    assert client.post("/v1/storage-pools/ghost/scrub", headers=admin).status_code == 404


def test_volume_migrate_is_a_task_and_the_bytes_follow(client: Any, admin: dict[str, str], svc: Any,
                                                       tmp_path: Any) -> None:
    for pool in ("sp", "sp2"):
        assert client.post("/v1/storage-pools", json={"name": pool, "replicas": 2, "segment_mib": 4},
                           headers=admin).status_code == 201
        for i in range(2):
            r = client.post(f"/v1/storage-pools/{pool}/devices",
                            json={"name": f"{pool}d{i}", "capacity_mib": 100, "domain": f"r{i}",
                                  "path": str(tmp_path / f"{pool}d{i}")}, headers=admin)
            assert r.status_code == 201, r.text
    svc.volumes.create_volume("demo", "v", "sp", 8)
    data = bytes(range(256)) * 9000
    svc.volumes.write_data("demo", "v", 100, data)
    r = client.post("/v1/volumes/v/migrate", json={"pool": "sp2"}, headers=admin)
    task = wait_task(client, admin, r)
    assert task["state"] == "succeeded", task
    assert task["result"]["to_pool"] == "sp2" and task["result"]["segments"] == 1 and task["progress"] == 1.0
    v = client.get("/v1/volumes/v", headers=admin).json()
    assert v["pool"] == "sp2" and set(v["devices"]) == {"sp2d0", "sp2d1"}
    assert svc.volumes.read_data("demo", "v", 100, len(data)) == data
    assert client.post("/v1/volumes/v/migrate", json={"pool": "sp2"}, headers=admin).status_code == 409
    assert client.post("/v1/volumes/v/migrate", json={"pool": "ghost"}, headers=admin).status_code == 404
    assert client.post("/v1/volumes/ghost/migrate", json={"pool": "sp"}, headers=admin).status_code == 404
    assert client.post("/v1/volumes/v/migrate", json={}, headers=admin).status_code == 422
