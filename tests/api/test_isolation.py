"""A store never sees another store's data: every route answers 404 for store A's ids to store B.

The routes are derived from the app itself, so that a route added later is covered without editing this file;
a route with a path parameter the test cannot fill fails the test instead of being skipped."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
from fastapi import FastAPI
from starlette.routing import Match

from tests.support.helpers import StoreCreds, webhook_body

NOT_FOUND = {"errors": [{"status": 404, "title": "Not Found", "detail": "The resource could not be found"}]}
PARAM = re.compile(r"{([^}:]+)(?::[^}]*)?}")  # {name} or {name:convertor}

# The routes this test covered when it listed them by hand: the derivation must find at least these.
KNOWN_ROUTES = {
    ("GET", "/v2/integrations/{integration_id}"),
    ("PUT", "/v2/integrations/{integration_id}"),
    ("DELETE", "/v2/integrations/{integration_id}"),
    ("GET", "/v2/integrations/{integration_id}/logs"),
    ("GET", "/v2/integrations/{integration_id}/jobs"),
    ("GET", "/v2/integrations/{integration_id}/jobs/{job_id}"),
    ("GET", "/v2/integrations/{integration_id}/jobs/{job_id}/logs"),
    ("POST", "/v2/integrations/{integration_id}/jobs/{job_id}/retry"),
    ("POST", "/v2/integrations/{integration_id}/jobs/retry"),
    ("GET", "/v2/integrations/{integration_id}/signing-secret"),
    ("POST", "/v2/integrations/{integration_id}/signing-secret/rotate"),
    ("GET", "/v2/events/{event_id}"),
}

# A minimal body for the methods that carry one; it is valid enough for every route that reads one before
# looking the resource up (POST .../jobs/retry wants a `data` object), and the answer must still be the 404.
BODIES: dict[str, dict[str, Any]] = {
    "POST": {"data": {"type": "integration", "status": "failed"}},
    "PUT": {"data": {"type": "integration", "name": "stolen"}},
    "PATCH": {"data": {"type": "integration", "name": "stolen"}},
}


def http_routes(routes: Iterable[Any], prefix: str = "") -> Iterator[tuple[str, frozenset[str] | None]]:
    """(path template, methods) of every route under `routes`, walking included routers and mounts.

    Older FastAPI versions copy an included router's routes into the app (APIRoute objects with the full path);
    newer ones keep one entry per included router (`original_router`, its prefix in `include_context`).
    Any other kind of route fails the test, so that none escapes it unseen."""
    for route in routes:
        if hasattr(route, "original_router") and hasattr(route, "include_context"):
            yield from http_routes(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "methods") and hasattr(route, "path"):
            methods = route.methods
            yield prefix + route.path, frozenset(methods) if methods is not None else None
        elif hasattr(route, "routes") and hasattr(route, "path"):  # a Mount (sub-application, static files)
            yield from http_routes(route.routes, prefix + route.path)
        elif hasattr(route, "path"):  # a WebSocketRoute: no methods
            yield prefix + route.path, None
        else:
            raise AssertionError(f"the test does not know how to walk route {route!r}")


def served(app: FastAPI, method: str, path: str) -> bool:
    """Whether some route of the app takes `method path` (not the fallback 404 for an unknown path)."""
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": [], "query_string": b""}
    return any(route.matches(scope)[0] == Match.FULL for route in app.router.routes)


async def test_store_b_gets_404_for_everything_of_store_a(
    app: FastAPI, client: httpx.AsyncClient, store: StoreCreds, other_store: StoreCreds
) -> None:
    a, b = store, other_store
    created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=a.headers)
    assert created.status_code == 201, created.text
    integration_id = created.json()["data"]["id"]
    event = await client.post(
        "/v2/events",
        json={"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o1"}}},
        headers=a.headers,
    )
    assert event.status_code == 202, event.text
    event_id = event.json()["data"]["id"]
    job_id = event.json()["data"]["relationships"]["jobs"]["data"][0]["id"]
    ids = {"integration_id": integration_id, "job_id": job_id, "event_id": event_id}
    secret = (await client.get(f"/v2/integrations/{integration_id}/signing-secret", headers=a.headers)).json()

    found = list(http_routes(app.routes))
    # the dashboard's pages are signed into by cookie, not token: test_dashboard.py derives and checks them
    with_params = [(path, methods) for path, methods in found if PARAM.search(path) and not path.startswith(
        "/dashboard")]
    assert with_params, f"no route with a path parameter found in {found}"
    calls: list[tuple[str, str, str]] = []  # (method, template, concrete path)
    for template, methods in with_params:
        assert methods, f"{template} takes a path parameter but is not an HTTP route the test can call"
        names = PARAM.findall(template)
        unknown = set(names) - set(ids)
        assert not unknown, f"{template}: the test does not know how to fill {sorted(unknown)}; add them to `ids`"
        path = PARAM.sub(lambda m: ids[m.group(1)], template)
        calls += [(method, template, path) for method in sorted(methods)]
    derived = {(method, template) for method, template, _ in calls}
    assert KNOWN_ROUTES <= derived, f"routes not derived from the app: {sorted(KNOWN_ROUTES - derived)}"

    # DELETE last, so that a leak there cannot hide what the other routes would answer
    for method, template, path in sorted(calls, key=lambda c: (c[0] == "DELETE", c[1], c[0])):
        assert served(app, method, path), (method, template, path)
        r = await client.request(method, path, json=BODIES.get(method), headers=b.headers)
        assert r.status_code == 404, (method, template, r.status_code, r.text)
        if method != "HEAD":  # a HEAD answer has no body
            assert r.json() == NOT_FOUND, (method, template, r.text)

    lists = await client.get("/v2/integrations", headers=b.headers)
    assert lists.status_code == 200 and lists.json()["data"] == []
    logs = await client.get("/v2/integrations/logs", headers=b.headers)
    assert logs.status_code == 200 and logs.json()["data"] == []

    # store A still has everything, untouched, and the very paths B was refused serve A: the ids were A's
    r = await client.get(f"/v2/integrations/{integration_id}", headers=a.headers)
    assert r.status_code == 200
    assert r.json()["data"]["name"] == "Order paid"
    assert (await client.get(f"/v2/events/{event_id}", headers=a.headers)).status_code == 200
    assert (await client.get(f"/v2/integrations/{integration_id}/signing-secret", headers=a.headers)).json() == secret
    job = await client.get(f"/v2/integrations/{integration_id}/jobs/{job_id}", headers=a.headers)
    assert (job.json()["data"]["status"], job.json()["data"]["attempts"]) == ("pending", 0)
    for method, template, path in calls:
        if method == "GET":
            r = await client.get(path, headers=a.headers)
            assert r.status_code == 200, (template, r.status_code, r.text)
