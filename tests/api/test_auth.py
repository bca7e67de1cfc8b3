"""OAuth: both grants, the exact response shape, wrong credentials, tokens, and sign-in rate limiting."""

from __future__ import annotations

import time

import jwt

from tests.support.helpers import StoreCreds, webhook_body


async def test_client_credentials_shape(client, store: StoreCreds) -> None:
    r = await client.post(
        "/oauth/access_token",
        data={"grant_type": "client_credentials", "client_id": store.client_id, "client_secret": store.client_secret},
    )
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "expires", "identifier"}
    assert body["token_type"] == "Bearer"
    assert body["identifier"] == "client_credentials"
    assert body["expires_in"] == 3600
    assert abs(body["expires"] - (int(time.time()) + 3600)) <= 5


async def test_json_body_accepted(client, store: StoreCreds) -> None:
    r = await client.post(
        "/oauth/access_token",
        json={"grant_type": "client_credentials", "client_id": store.client_id, "client_secret": store.client_secret},
    )
    assert r.status_code == 200
    assert r.json()["identifier"] == "client_credentials"


async def test_implicit_token_is_forbidden_on_integrations(client, store: StoreCreds) -> None:
    r = await client.post("/oauth/access_token", data={"grant_type": "implicit", "client_id": store.client_id})
    assert r.status_code == 200
    assert r.json()["identifier"] == "implicit"
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    for method, path in [("GET", "/v2/integrations"), ("GET", "/v2/integrations/logs"), ("POST", "/v2/events")]:
        resp = await client.request(method, path, headers=headers, json={})
        assert resp.status_code == 403, (method, path, resp.text)
        assert resp.json()["errors"][0]["status"] == 403


async def test_wrong_secret_is_401(client, store: StoreCreds) -> None:
    r = await client.post(
        "/oauth/access_token",
        data={"grant_type": "client_credentials", "client_id": store.client_id, "client_secret": "wrong"},
    )
    assert r.status_code == 401
    assert r.json()["errors"][0]["title"] == "Unauthorized"


async def test_unknown_client_is_401(client) -> None:
    r = await client.post("/oauth/access_token", data={"grant_type": "implicit", "client_id": "nobody"})
    assert r.status_code == 401


async def test_bad_grant_is_422(client, store: StoreCreds) -> None:
    r = await client.post("/oauth/access_token", data={"grant_type": "password", "client_id": store.client_id})
    assert r.status_code == 422
    assert r.json()["errors"][0]["source"] == "grant_type"


async def test_missing_invalid_and_expired_tokens_are_401(client, app, store: StoreCreds) -> None:
    assert (await client.get("/v2/integrations")).status_code == 401
    r = await client.get("/v2/integrations", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 401
    assert r.json()["errors"][0]["detail"] == "The access token is invalid"
    expired = jwt.encode(
        {"sub": store.id, "grant": "client_credentials", "iat": 1, "exp": int(time.time()) - 10},
        app.state.token_key,
        algorithm="HS256",
    )
    r = await client.get("/v2/integrations", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401
    assert "expired" in r.json()["errors"][0]["detail"]
    forged = jwt.encode(
        {"sub": store.id, "grant": "client_credentials", "exp": int(time.time()) + 60},
        "another-signing-key-of-at-least-32-bytes",
        algorithm="HS256",
    )
    assert (await client.get("/v2/integrations", headers={"Authorization": f"Bearer {forged}"})).status_code == 401


async def test_failed_sign_ins_are_rate_limited(client, app, store: StoreCreds) -> None:
    limit = app.state.settings.login_attempts
    form = {"grant_type": "client_credentials", "client_id": store.client_id, "client_secret": "nope"}
    for _ in range(limit):
        assert (await client.post("/oauth/access_token", data=form)).status_code == 401
    r = await client.post("/oauth/access_token", data=form)
    assert r.status_code == 429
    assert int(r.headers["Retry-After"]) > 0
    # even the right secret waits until the window passes
    form["client_secret"] = store.client_secret
    assert (await client.post("/oauth/access_token", data=form)).status_code == 429


async def test_token_works_for_its_store(client, store: StoreCreds) -> None:
    r = await client.post("/v2/integrations", json=webhook_body(), headers=store.headers)
    assert r.status_code == 201
