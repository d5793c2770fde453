"""The schema registry endpoints answer in Confluent's shapes, through the real app."""

from __future__ import annotations

import json

import fastavro
import httpx
import pytest

from pachon.core.alerts import latest_schema
from pachon.services.alerts.main import create_app


@pytest.fixture(scope="module")
def client():
    return httpx.ASGITransport(app=create_app("lsst-alerts"))


async def _get(transport, path: str) -> httpx.Response:
    async with httpx.AsyncClient(transport=transport, base_url="http://registry") as http:
        return await http.get(path)


def get(transport, path: str) -> httpx.Response:
    import asyncio

    return asyncio.run(_get(transport, path))


def test_schema_by_id_is_the_shipped_schema(client) -> None:
    latest = latest_schema()
    response = get(client, f"/schemas/ids/{latest.schema_id}")
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"schema"}
    served = json.loads(body["schema"])
    assert served == latest.definition
    fastavro.parse_schema(served)  # a plain Avro document (no fastavro bookkeeping keys)
    assert "__fastavro" not in body["schema"]


def test_subjects_and_versions(client) -> None:
    subjects = get(client, "/subjects").json()
    assert "alert-packet" in subjects and "lsst-alerts-v11-value" in subjects
    versions = get(client, "/subjects/lsst-alerts-v11-value/versions").json()
    assert versions == list(range(1, len(versions) + 1)) and len(versions) >= 1
    latest = get(client, "/subjects/lsst-alerts-v11-value/versions/latest").json()
    assert set(latest) == {"subject", "version", "id", "schema"}
    assert latest["subject"] == "lsst-alerts-v11-value"
    assert latest["id"] == latest_schema().schema_id and latest["version"] == versions[-1]
    first = get(client, "/subjects/alert-packet/versions/1").json()
    assert first["id"] == 300
    raw = get(client, f"/subjects/alert-packet/versions/{latest['version']}/schema")
    assert raw.headers["content-type"].startswith("application/vnd.schemaregistry.v1+json")
    pairs = get(client, f"/schemas/ids/{latest['id']}/versions").json()
    assert {"subject": "lsst-alerts-v11-value", "version": latest["version"]} in pairs
    assert get(client, f"/schemas/ids/{latest['id']}/subjects").json() == [
        "alert-packet",
        "lsst-alerts-v11-value",
    ]
    assert get(client, "/config").json() == {"compatibilityLevel": "NONE"}
    assert get(client, "/schemas/types").json() == ["AVRO"]


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/schemas/ids/12345", 404, 40403),
        ("/subjects/nope/versions", 404, 40401),
        ("/subjects/alert-packet/versions/999", 404, 40402),
        ("/subjects/alert-packet/versions/abc", 422, 42202),
    ],
)
def test_errors_have_confluent_codes(client, path: str, status: int, code: int) -> None:
    response = get(client, path)
    assert response.status_code == status
    assert response.json()["error_code"] == code
    assert response.json()["message"]


def test_registry_is_read_only(client) -> None:
    import asyncio

    async def post():
        async with httpx.AsyncClient(transport=client, base_url="http://registry") as http:
            return await http.post("/subjects/x/versions", json={"schema": "{}"})

    response = asyncio.run(post())
    assert response.status_code == 422 and response.json()["error_code"] == 42205
