"""The operator's commands: serve on an empty database, stores, migrate, and a wheel that ships migrations."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx

from tests.support.server import HERALD, herald_env, serve, token

ROOT = Path(__file__).parents[2]


def test_serve_on_empty_sqlite_prints_url_and_credentials_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    first = serve(url, tmp_path, HERALD_SECRET_KEY="")
    try:
        out = first.output()
        assert f"listening on {first.url}" in out
        assert "shown only this once" in out
        creds = first.credentials
        assert len(creds["client_id"]) == 40 and len(creds["client_secret"]) >= 32
        tok = token(first.url, creds["client_id"], creds["client_secret"])
        r = httpx.get(f"{first.url}/v2/integrations", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200
    finally:
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert first.stop() in (0, -15)
    second = serve(url, tmp_path, HERALD_SECRET_KEY="")
    try:
        assert "client_secret" not in second.output()
        # the token key lives in the database, so a token survives a restart
        r = httpx.get(f"{second.url}/v2/integrations", headers={"Authorization": f"Bearer {tok}"})
        assert r.status_code == 200
    finally:
        second.stop()


def test_stores_create_and_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    env = herald_env(url)
    created = subprocess.run(HERALD + ["stores", "create", "--name", "Shop", "--json"], env=env,
                             capture_output=True, text=True, check=True)
    store = json.loads(created.stdout)
    assert set(store) == {"id", "name", "client_id", "client_secret"} and store["name"] == "Shop"
    listed = subprocess.run(HERALD + ["stores", "list", "--json"], env=env, capture_output=True, text=True, check=True)
    rows = json.loads(listed.stdout)
    assert [r["client_id"] for r in rows] == [store["client_id"]]
    assert "client_secret" not in listed.stdout
    migrated = subprocess.run(HERALD + ["migrate"], env=env, capture_output=True, text=True, check=True)
    from herald.db.migrate import head

    assert f"revision {head()}" in migrated.stdout


def test_wheel_ships_the_migrations(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)], check=True
    )
    wheel = next(tmp_path.glob("herald-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "herald/db/migrations/env.py" in names
    assert "herald/db/migrations/script.py.mako" in names
    assert any(n.startswith("herald/db/migrations/versions/0001") for n in names)
    # the dashboard works offline: its templates and every asset are in the package
    for asset in ("templates/base.html", "templates/logs.html", "static/dashboard.css", "static/dashboard.js",
                  "static/favicon.svg"):
        assert f"herald/dashboard/{asset}" in names, asset
