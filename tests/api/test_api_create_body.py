"""The create route answers a prebuilt JSON body (api/routes/workloads.py: validated once into
the declared model, dumped by alias as FastAPI would): it must be exactly what FastAPI's
response_model serialization gives, for a placement and a dry run, and the OpenAPI document
must still declare the model."""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder

from poolvisor.api.schemas import WorkloadOut


def test_the_create_body_is_the_declared_model_as_fastapi_would_write_it(client: Any,
                                                                         admin: dict[str, str]) -> None:
    for dry_run, status in ((False, 201), (True, 200)):
        r = client.post("/v1/workloads", params={"dry_run": dry_run}, headers=admin,
                        json={"name": f"b{int(dry_run)}", "flavor": "small", "project": "demo"})
        assert r.status_code == status, r.text
        assert r.headers["content-type"] == "application/json"
        body = r.json()
        model = WorkloadOut.model_validate(body)
        assert body == jsonable_encoder(model, by_alias=True)  # FastAPI's own serialization
        assert set(body) == set(WorkloadOut.model_fields)
    got = client.get("/v1/workloads/b0", params={"project": "demo"}, headers=admin).json()
    assert set(got) == set(body) and got["name"] == "b0" and got["state"] == "running"


def test_the_create_route_still_declares_its_model(client: Any) -> None:
    op = client.get("/openapi.json").json()["paths"]["/v1/workloads"]["post"]
    for code in ("200", "201"):
        ref = op["responses"][code]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/WorkloadOut")
