"""Schemathesis over the whole OpenAPI document (GET /openapi.json), against the in-process app on each backend:
no answer is a server error, and every answer, errors included, has a documented status code and matches the
schema documented for it.

The requests carry a real store's client_credentials token. That store gets an integration, an event and its job,
delivered once so that it has a log (through the API, by a real worker), before the run; each path parameter is
then either generated or one of those real ids, so that the operations answer with real data as well as with
404s. Deterministic (derandomized), with at most MAX_EXAMPLES generated requests per operation after the
coverage phase's boundary and invalid values. Run it alone with `make fuzz`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance, status_code_conformance

from herald.app import create_app
from herald.settings import Settings
from tests.support.helpers import make_settings, new_store, webhook_body
from tests.support.server import Receiver, poll

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]

# The document does not depend on the database: it is read from an app that never starts. Examples from the
# document, then the coverage phase's boundary and invalid values, then generated requests, valid and not.
schema = schemathesis.openapi.from_dict(
    create_app(Settings(database_url="sqlite://")).openapi(),
    config=schemathesis.Config.from_dict({
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "mode": "all"},
        "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True}},
    }),
)


@dataclass
class Fuzzed:
    app: Any
    headers: dict[str, str]
    ids: dict[str, str]  # path parameter -> a real id of that kind
    doomed: str  # an integration for DELETE, so that the others keep theirs


async def _seed(database_url: str) -> Fuzzed:
    """A store, a webhook integration, an event and its job delivered once (so that it has a log), and one more
    integration for DELETE."""
    application = create_app(make_settings(database_url), worker=True)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
            store = await new_store(application, client, "Fuzzed store")
            async with Receiver() as receiver:
                body = webhook_body(enabled=True, configuration={"url": receiver.url(), "secret_key": "fuzzsecret12"})
                r = await client.post("/v2/integrations", json=body, headers=store.headers)
                assert r.status_code == 201, r.text
                integration_id = r.json()["data"]["id"]
                r = await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)
                assert r.status_code == 201, r.text
                doomed = r.json()["data"]["id"]
                event = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o-1"}}}
                r = await client.post("/v2/events", json=event, headers=store.headers)
                assert r.status_code == 202, r.text
                published = r.json()["data"]
                logs = f"/v2/integrations/{integration_id}/logs"
                await poll(lambda: client.get(logs, headers=store.headers),
                           lambda resp: resp.json()["results"]["total"] >= 1)
    job_id = published["relationships"]["jobs"]["data"][0]["id"]
    ids = {"integration_id": integration_id, "event_id": published["id"], "job_id": job_id}
    return Fuzzed(create_app(make_settings(database_url)), store.headers, ids, doomed)


REAL_IDS: dict[str, str] = {}
"""The current backend's real ids, by path parameter (DELETE's integration under `DELETE integration_id`)."""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(request: pytest.FixtureRequest) -> Iterator[Fuzzed]:
    database_url = request.getfixturevalue({"sqlite": "sqlite_url", "postgresql": "postgres_url"}[request.param])
    fuzzed = asyncio.run(_seed(database_url))
    REAL_IDS.clear()
    REAL_IDS.update(fuzzed.ids, **{"DELETE integration_id": fuzzed.doomed})
    yield fuzzed
    from schemathesis.python.asgi import shutdown_lifespans

    shutdown_lifespans()


@schema.hook
def flatmap_path_parameters(context: schemathesis.HookContext, path_parameters: dict[str, Any]) -> Any:
    """Each path parameter: the generated value, or the real id of that name."""
    if not isinstance(path_parameters, dict):
        return st.just(path_parameters)
    method = context.operation.method.upper() if context.operation else ""
    choices = {}
    for name, value in path_parameters.items():
        real = REAL_IDS.get(f"{method} {name}", REAL_IDS.get(name))
        choices[name] = st.sampled_from([value, real]) if real else st.just(value)
    return st.fixed_dictionaries(choices)


@schema.parametrize()
def test_openapi_document(case: schemathesis.Case, fuzzed: Fuzzed) -> None:
    case.call_and_validate(app=fuzzed.app, headers=fuzzed.headers, checks=CHECKS)


def test_every_answer_is_herald_s_own() -> None:
    """No FastAPI validation error is documented (Herald answers its own), every error has the one error schema,
    and every /v2 operation says it needs the bearer token."""
    document = create_app(Settings(database_url="sqlite://")).openapi()
    assert "HTTPValidationError" not in str(document)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, answer in operation["responses"].items():
                if int(status) >= 400 and not (path == "/readyz" and status == "503"):
                    assert answer["content"]["application/json"]["schema"] == {
                        "$ref": "#/components/schemas/ErrorDocument"}, (method, path, status)
            assert (operation.get("security") == [{"bearer": []}]) == path.startswith("/v2/"), (method, path)
