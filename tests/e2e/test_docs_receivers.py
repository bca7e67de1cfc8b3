"""The receiver examples of docs/receivers.md, run as they are written against what a real `herald serve` sends.

The Python block is executed as a module; the Node blocks are written to files (`verify.mjs`, `server.mjs`)
next to a link to tests/js/node_modules, where `standardwebhooks` is installed from the lock file. Each check
runs on the exact request a real receiver on loopback got: it must verify, before and after a rotation of the
signing secret, and must not once the body, the key, the Moltin secret header or the timestamp is changed.
Then each example's own server is the receiver, and Herald's log must show its 204.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from herald.domain.signatures import sign
from tests.support.server import HeraldProcess, Receiver, create_store, free_port, poll, serve, token

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "receivers.md"
JS_DIR = ROOT / "tests" / "js"
SECRET_KEY = "moltin-shared-secret-value"
NPM_TIMEOUT = 300.0
NODE_TIMEOUT = 60.0
FORGED = {"webhook-id": "msg_forged", "webhook-timestamp": str(int(time.time())), "webhook-signature": "v1,AAAA"}

# Runs the doc's verifyDelivery on each case read from stdin; prints one result per case.
NODE_HARNESS = """\
import { readFileSync } from "node:fs";
import { WebhookVerificationError } from "standardwebhooks";
import { verifyDelivery } from "./verify.mjs";

const cases = JSON.parse(readFileSync(0, "utf8"));
const results = cases.map((c) => {
  try {
    const body = Buffer.from(c.body, "base64");
    const delivery = verifyDelivery(body, c.headers, c.signingSecret, c.secretKey ?? undefined);
    return { ok: true, id: delivery.id };
  } catch (err) {
    return { ok: false, refused: err instanceof WebhookVerificationError, error: `${err.name}: ${err.message}` };
  }
});
process.stdout.write(JSON.stringify(results));
"""


# --- the examples, out of the doc ----------------------------------------------------------------------------


def fenced(lang: str) -> list[str]:
    """The code of every ```<lang> block of docs/receivers.md, in order."""
    text = DOC.read_text(encoding="utf-8")
    return [m.group(1) for m in re.finditer(rf"^```{lang}\n(.*?)^```$", text, flags=re.M | re.S)]


def python_example() -> str:
    (code,) = fenced("python")
    return code


def node_examples() -> dict[str, str]:
    """File name (from each block's first line, `// verify.mjs ...`) -> code."""
    files = {}
    for code in fenced("js"):
        first = code.splitlines()[0]
        m = re.match(r"// (\w+\.mjs)\b", first)
        assert m, f"a js block of {DOC.name} does not start with its file name: {first!r}"
        files[m.group(1)] = code
    assert set(files) == {"verify.mjs", "server.mjs"}, sorted(files)
    return files


def load_python_example() -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "receiver_example"}
    exec(compile(python_example(), f"{DOC}:python", "exec"), namespace)
    return namespace


# --- Herald, a store, an integration --------------------------------------------------------------------------


@dataclass
class Herald:
    process: HeraldProcess
    headers: dict[str, str]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.process.url, headers=self.headers, timeout=10)


@pytest.fixture(scope="module")
def herald(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Herald]:
    folder = tmp_path_factory.mktemp("docs-receivers")
    url = f"sqlite:///{folder / 'herald.db'}"
    process = serve(url, folder)
    try:
        creds = create_store(url, "Receivers doc")
        bearer = token(process.url, creds["client_id"], creds["client_secret"])
        yield Herald(process, {"Authorization": f"Bearer {bearer}"})
    finally:
        process.stop()


async def create_integration(client: httpx.AsyncClient, url: str) -> tuple[str, str]:
    """A webhook integration with a Moltin secret_key; its id and its signing secret."""
    body = {"data": {"type": "integration", "name": "Receivers doc", "enabled": True, "observes": ["order.paid"],
                     "configuration": {"url": url, "secret_key": SECRET_KEY}}}
    r = await client.post("/v2/integrations", json=body)
    assert r.status_code == 201, r.text
    integration_id = r.json()["data"]["id"]
    r = await client.get(f"/v2/integrations/{integration_id}/signing-secret")
    assert r.status_code == 200, r.text
    return integration_id, r.json()["data"]["key"]


async def delete_integration(client: httpx.AsyncClient, integration_id: str) -> None:
    """Done with it: the next scenario's events make no job for it."""
    assert (await client.delete(f"/v2/integrations/{integration_id}")).status_code == 204


async def publish(client: httpx.AsyncClient, payload: dict[str, Any]) -> dict[str, Any]:
    r = await client.post("/v2/events", json={"data": {"type": "event", "triggered_by": "order.paid",
                                                        "payload": payload}})
    assert r.status_code == 202, r.text
    return r.json()["data"]


@dataclass
class Recorded:
    body: bytes
    headers: dict[str, str]
    event_id: str
    job_id: str
    old_key: str
    new_key: str
    rotated: dict[str, Any]  # the request of a second event, sent after the rotation


@pytest.fixture(scope="module")
def recorded(herald: Herald) -> Recorded:
    """Two requests a real receiver got: one before and one after a rotation of the signing secret."""

    async def go() -> Recorded:
        async with Receiver() as receiver, herald.client() as client:
            integration_id, old_key = await create_integration(client, receiver.url())
            event = await publish(client, {"id": "order-1", "total": 4200, "note": "café ✓"})
            (first,) = await receiver.wait_for(1)
            r = await client.post(f"/v2/integrations/{integration_id}/signing-secret/rotate")
            assert r.status_code == 200, r.text
            new_key = r.json()["data"]["key"]
            await publish(client, {"id": "order-2"})
            second = (await receiver.wait_for(2))[1]
            await delete_integration(client, integration_id)
        (job,) = event["relationships"]["jobs"]["data"]
        return Recorded(first["body"], first["headers"], event["id"], job["id"], old_key, new_key, second)

    return asyncio.run(go())


def tampered(rec: Recorded) -> bytes:
    changed = rec.body.replace(b'"total":4200', b'"total":1')
    assert changed != rec.body
    return changed


def with_header(headers: dict[str, str], name: str, value: str) -> dict[str, str]:
    kept = {k: v for k, v in headers.items() if k.lower() != name.lower()}
    return {**kept, name: value}


def resigned_at(rec: Recorded, timestamp: int) -> dict[str, str]:
    """The first request's headers, signed correctly but at another time."""
    headers = with_header(rec.headers, "webhook-timestamp", str(timestamp))
    msg_id = next(v for k, v in rec.headers.items() if k.lower() == "webhook-id")
    return with_header(headers, "webhook-signature", sign([rec.old_key], msg_id, timestamp, rec.body))


# --- the headers ----------------------------------------------------------------------------------------------

TRANSPORT_HEADERS = {"host", "content-length", "accept", "accept-encoding"}  # aiohttp's, on every request


def documented_headers() -> dict[str, str]:
    """The header table of "What a delivery looks like": lower-cased name -> its row."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## What a delivery looks like", 1)[1].split("\n## ", 1)[0]
    return {m[1].lower(): m[0] for m in re.finditer(r"^\| `([A-Za-z-]+)` \|.*$", section, flags=re.M)}


def test_the_header_table_lists_what_herald_sends(recorded: Recorded) -> None:
    sent = {name.lower(): value for name, value in recorded.headers.items()}
    assert set(documented_headers()) == set(sent) - TRANSPORT_HEADERS
    assert sent["content-type"] == "application/json"
    assert sent["user-agent"].startswith("Herald/")
    assert sent["x-moltin-integration-trigger"] == "order.paid"
    assert sent["x-moltin-secret-key"] == SECRET_KEY
    assert sent["webhook-id"] == recorded.job_id
    assert re.fullmatch(r"v1,[A-Za-z0-9+/=]+", sent["webhook-signature"])
    assert abs(int(sent["webhook-timestamp"]) - time.time()) < 120


# --- the Python example ---------------------------------------------------------------------------------------


def test_the_python_example_accepts_what_herald_sends(recorded: Recorded) -> None:
    verify = load_python_example()["verify_delivery"]
    delivery = verify(recorded.body, recorded.headers, recorded.old_key, SECRET_KEY)
    assert delivery["id"] == recorded.event_id and delivery["payload"]["note"] == "café ✓"
    assert verify(recorded.body, recorded.headers, recorded.old_key)["id"] == recorded.event_id  # no secret_key
    # after the rotation both keys verify, as the doc says
    after = recorded.rotated
    assert len(next(v for k, v in after["headers"].items() if k.lower() == "webhook-signature").split()) == 2
    for key in (recorded.new_key, recorded.old_key):
        assert verify(after["body"], after["headers"], key, SECRET_KEY)["payload"] == {"id": "order-2"}


def test_the_python_example_refuses_what_herald_did_not_send(recorded: Recorded) -> None:
    example = load_python_example()
    verify, refused = example["verify_delivery"], example["WebhookVerificationError"]
    now = int(time.time())
    cases = {
        "a changed body": (tampered(recorded), recorded.headers, recorded.old_key, SECRET_KEY),
        "another key": (recorded.body, recorded.headers, "whsec_" + base64.b64encode(b"k" * 24).decode(), None),
        "the first request and the new key": (recorded.body, recorded.headers, recorded.new_key, None),
        "a wrong X-MOLTIN-SECRET-KEY": (
            recorded.body, with_header(recorded.headers, "X-MOLTIN-SECRET-KEY", "guess"), recorded.old_key, SECRET_KEY,
        ),
        "no X-MOLTIN-SECRET-KEY": (
            recorded.body, {k: v for k, v in recorded.headers.items() if k.lower() != "x-moltin-secret-key"},
            recorded.old_key, SECRET_KEY,
        ),
        "a timestamp 6 minutes old": (recorded.body, resigned_at(recorded, now - 360), recorded.old_key, None),
        "a malformed signature": (
            recorded.body, with_header(recorded.headers, "webhook-signature", "v1"), recorded.old_key, None,
        ),
    }
    for label, args in cases.items():
        try:
            verify(*args)
        except refused:
            continue
        pytest.fail(f"the example verified {label}")
    assert verify(recorded.body, resigned_at(recorded, now - 240), recorded.old_key, None)  # within 5 minutes


async def test_the_python_example_server_receives_from_herald(herald: Herald) -> None:
    example = load_python_example()
    server = ThreadingHTTPServer(("127.0.0.1", 0), example["Receiver"])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        async with herald.client() as client:
            integration_id, key = await create_integration(client, url)
            example["SIGNING_SECRET"], example["SECRET_KEY"] = key, SECRET_KEY
            event = await publish(client, {"id": "order-py"})
            logs = await poll(lambda: client.get(f"/v2/integrations/{integration_id}/logs"),
                              lambda r: r.status_code == 200 and r.json()["data"])
            await delete_integration(client, integration_id)
            (log,) = logs.json()["data"]
            assert (log["succeeded"], log["status_code"]) == (True, 204), log
            assert example["seen"] == {j["id"] for j in event["relationships"]["jobs"]["data"]}
        async with httpx.AsyncClient() as plain:
            forged = await plain.post(url, content=b'{"id":"x"}', headers=FORGED)
        assert forged.status_code == 401
    finally:
        server.shutdown()
        server.server_close()


# --- the Node example -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def node_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The doc's two files and a harness, next to a link to tests/js/node_modules."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the Node example of docs/receivers.md is not checked")
    if not (JS_DIR / "node_modules" / "standardwebhooks" / "package.json").is_file():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"npm is not installed: cannot install standardwebhooks in {JS_DIR} (run `npm ci` there)")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, text=True,
                              timeout=NPM_TIMEOUT)
        if done.returncode != 0:
            pytest.fail(f"`npm ci` in {JS_DIR} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    folder = tmp_path_factory.mktemp("docs-receivers-node")
    (folder / "node_modules").symlink_to(JS_DIR / "node_modules", target_is_directory=True)
    for name, code in node_examples().items():
        (folder / name).write_text(code, encoding="utf-8")
    (folder / "harness.mjs").write_text(NODE_HARNESS, encoding="utf-8")
    return folder


def run_node_verify(folder: Path, cases: list[tuple[bytes, dict[str, str], str, str | None]]) -> list[dict[str, Any]]:
    payload = [{"body": base64.b64encode(body).decode(), "headers": headers, "signingSecret": key, "secretKey": secret}
               for body, headers, key, secret in cases]
    done = subprocess.run(["node", "harness.mjs"], cwd=folder, input=json.dumps(payload), capture_output=True,
                          text=True, timeout=NODE_TIMEOUT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_node_example_accepts_what_herald_sends(node_dir: Path, recorded: Recorded) -> None:
    after = recorded.rotated
    results = run_node_verify(node_dir, [
        (recorded.body, recorded.headers, recorded.old_key, SECRET_KEY),
        (recorded.body, recorded.headers, recorded.old_key, None),
        (after["body"], after["headers"], recorded.new_key, SECRET_KEY),
        (after["body"], after["headers"], recorded.old_key, SECRET_KEY),
    ])
    assert [r.get("id") for r in results[:2]] == [recorded.event_id] * 2, results
    assert all(r["ok"] for r in results), results


def test_the_node_example_refuses_what_herald_did_not_send(node_dir: Path, recorded: Recorded) -> None:
    now = int(time.time())
    results = run_node_verify(node_dir, [
        (tampered(recorded), recorded.headers, recorded.old_key, SECRET_KEY),
        (recorded.body, recorded.headers, "whsec_" + base64.b64encode(b"k" * 24).decode(), None),
        (recorded.body, recorded.headers, recorded.new_key, None),
        (recorded.body, with_header(recorded.headers, "X-MOLTIN-SECRET-KEY", "guess"), recorded.old_key, SECRET_KEY),
        (recorded.body, {k: v for k, v in recorded.headers.items() if k.lower() != "x-moltin-secret-key"},
         recorded.old_key, SECRET_KEY),
        (recorded.body, resigned_at(recorded, now - 360), recorded.old_key, None),
        (recorded.body, resigned_at(recorded, now - 240), recorded.old_key, None),
    ])
    assert [r["ok"] for r in results] == [False] * 6 + [True], results
    assert all(r["refused"] for r in results[:6]), results


@pytest.fixture
def node_server(node_dir: Path, herald: Herald) -> Iterator[tuple[str, str, str]]:
    """The doc's server.mjs as the receiver of a new integration: (its url, the integration id, its key)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"

    async def integration() -> tuple[str, str]:
        async with herald.client() as client:
            return await create_integration(client, url)

    integration_id, key = asyncio.run(integration())
    env = {"PATH": "/usr/bin:/bin", "SIGNING_SECRET": key, "MOLTIN_SECRET_KEY": SECRET_KEY, "PORT": str(port)}
    node = shutil.which("node") or "node"
    proc = subprocess.Popen([node, "server.mjs"], cwd=node_dir, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server.mjs did not listen on {port}: {proc.communicate()[0]}") from None
                time.sleep(0.05)
        yield url, integration_id, key
    finally:
        proc.terminate()
        proc.wait(10)


async def test_the_node_example_server_receives_from_herald(herald: Herald, node_server: tuple[str, str, str]) -> None:
    url, integration_id, _ = node_server
    async with herald.client() as client:
        await publish(client, {"id": "order-node"})
        logs = await poll(lambda: client.get(f"/v2/integrations/{integration_id}/logs"),
                          lambda r: r.status_code == 200 and r.json()["data"])
        await delete_integration(client, integration_id)
    (log,) = logs.json()["data"]
    assert (log["succeeded"], log["status_code"]) == (True, 204), log
    async with httpx.AsyncClient() as plain:
        forged = await plain.post(url, content=b'{"id":"x"}', headers=FORGED)
    assert forged.status_code == 401
