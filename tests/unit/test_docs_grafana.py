"""docs/grafana/herald-dashboard.json asks only for what Herald exposes: every metric named in a panel's query
(and in the dashboard's variable) is scraped from a real app's /metrics, with the labels the query groups or
filters by, and every metric the app exposes has a panel."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald.app import create_app
from herald.db.migrate import upgrade
from herald.delivery.transports.base import Delivered, DeliveryFailed
from herald.delivery.transports.fake import FakeTransport
from herald.delivery.worker import Worker
from herald.domain.messages import OutboundMessage
from tests.support.helpers import make_settings, new_store, webhook_body
from tests.support.server import poll

DASHBOARD = Path(__file__).parents[2] / "docs" / "grafana" / "herald-dashboard.json"
SCRAPE_LABELS = {"job", "instance"}  # added by Prometheus to every series it scrapes

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2"}
TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\{[^}]*\}|\[[^\]]*\]|[A-Za-z_:][A-Za-z0-9_:]*|\(|\)|,|[^\sA-Za-z_:(),"{\[]+')
MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')


# --- the dashboard's queries ------------------------------------------------------------------------------------


@dataclass
class Query:
    where: str  # the panel title, for the failure messages
    metrics: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)  # name -> its matchers
    grouping: set[str] = field(default_factory=set)  # labels named in by (...), without (...), on (...) ...


def parse_promql(expr: str, where: str) -> Query:
    """The metric names, their label matchers and the grouping labels of one PromQL expression."""
    query = Query(where)
    tokens = TOKEN.findall(expr)
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok in GROUPING:
            assert following == "(", f"{where}: {tok} without a label list in {expr!r}"
            end = tokens.index(")", i)
            query.grouping.update(t for t in tokens[i + 2:end] if t != ",")
            i = end + 1
            continue
        if re.fullmatch(r"[A-Za-z_:][A-Za-z0-9_:]*", tok) and tok not in KEYWORDS:
            if following == "(" or tok in AGGREGATIONS:  # a function, or an aggregation before by/without
                i += 1
                continue
            matchers = MATCHER.findall(following) if following.startswith("{") else []
            query.metrics.setdefault(tok, []).extend(matchers)
            i += 2 if following.startswith("{") else 1
            continue
        if tok.startswith("{"):  # a selector with no metric name: {__name__=~"..."} is not used here
            raise AssertionError(f"{where}: a selector without a metric name in {expr!r}")
        i += 1
    return query


def walk_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from walk_panels(panel.get("panels", []))


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text(encoding="utf-8"))


def dashboard_queries() -> list[Query]:
    board = dashboard()
    found: list[Query] = []
    for panel in walk_panels(board["panels"]):
        for target in panel.get("targets", []):
            found.append(parse_promql(target["expr"], f"panel {panel['title']!r} ({target['refId']})"))
    for variable in board.get("templating", {}).get("list", []):
        for text in {variable.get("definition"), variable.get("query")} - {None}:
            m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", str(text))
            assert m, f"variable {variable['name']}: expected label_values(metric, label), got {text!r}"
            found.append(Query(f"variable {variable['name']!r}", {m[1]: []}, {m[2]}))
    return found


# --- what a real app exposes ------------------------------------------------------------------------------------


@dataclass
class Exposed:
    labels: dict[str, set[str]]  # sample name (with _total, _bucket ...) -> its label names
    values: dict[tuple[str, str], set[str]]  # (sample name, label) -> the values seen
    family_of: dict[str, str]  # sample name -> its family (herald_deliveries, herald_attempt_duration_seconds ...)


def parse_exposition(text: str) -> Exposed:
    exposed = Exposed({}, {}, {})
    for family in text_string_to_metric_families(text):
        suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count")}.get(family.type, ("",))
        for suffix in suffixes:
            exposed.labels.setdefault(family.name + suffix, set())
            exposed.family_of[family.name + suffix] = family.name
        for sample in family.samples:
            exposed.labels.setdefault(sample.name, set()).update(sample.labels)
            exposed.family_of[sample.name] = family.name
            for label, value in sample.labels.items():
                exposed.values.setdefault((sample.name, label), set()).add(value)
    return exposed


@pytest.fixture
async def exposed(tmp_path: Path) -> AsyncIterator[Exposed]:
    """Scrape an in-process app after an API request and two delivery attempts (one failed, one succeeded), so
    that every labelled metric has its samples."""
    url = f"sqlite:///{tmp_path / 'grafana.db'}"
    upgrade(url)
    settings = make_settings(url, retry_schedule="0.05")
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://herald.test") as client:
            store = await new_store(app, client)
            created = await client.post("/v2/integrations", json=webhook_body(enabled=True), headers=store.headers)
            assert created.status_code == 201, created.text
            event = {"data": {"type": "event", "triggered_by": "order.paid", "payload": {"id": "o1"}}}
            assert (await client.post("/v2/events", json=event, headers=store.headers)).status_code == 202

            def script(message: OutboundMessage) -> Delivered | BaseException:
                return DeliveryFailed("no", status=500) if message.attempt == 1 else Delivered(200, "ok")

            worker = Worker(settings, app.state.db, transports={"webhook": FakeTransport(script)})
            app.state.metrics.watch(worker)
            await worker.start()
            try:
                await poll(lambda: client.get("/metrics"), lambda r: 'outcome="succeeded"' in r.text)
            finally:
                await worker.stop()
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            yield parse_exposition(scraped.text)


# --- the checks -------------------------------------------------------------------------------------------------


def test_the_dashboard_is_importable() -> None:
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    assert board["__inputs"][0]["pluginId"] == "prometheus"
    panels = list(walk_panels(board["panels"]))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert target["expr"].count("(") == target["expr"].count(")"), (panel["title"], target["expr"])


def test_the_query_reader_finds_names_labels_and_grouping() -> None:
    q = parse_promql(
        'histogram_quantile(0.99, sum by (le, route) (rate(herald_x_bucket{job=~"$job", a="b"}[$__rate_interval])))'
        ' / on (route) sum without (c) (herald_y_total) and max(herald_z)', "example",
    )
    assert set(q.metrics) == {"herald_x_bucket", "herald_y_total", "herald_z"}
    assert q.metrics["herald_x_bucket"] == [("job", "=~", "$job"), ("a", "=", "b")]
    assert q.grouping == {"le", "route", "c"}


async def test_every_metric_in_the_dashboard_is_exposed(exposed: Exposed) -> None:
    problems: list[str] = []
    for query in dashboard_queries():
        known = set(SCRAPE_LABELS)
        for name, matchers in query.metrics.items():
            if name not in exposed.labels:
                problems.append(f"{query.where}: {name} is not a metric Herald exposes")
                continue
            labels = exposed.labels[name]
            known |= labels
            for label, op, value in matchers:
                if label not in labels | SCRAPE_LABELS:
                    problems.append(f"{query.where}: {name} has no label {label!r} (it has {sorted(labels)})")
                elif op == "=" and label not in SCRAPE_LABELS and value not in exposed.values.get((name, label), ()):
                    seen = sorted(exposed.values.get((name, label), ()))
                    problems.append(f"{query.where}: {name}{{{label}={value!r}}} is never exposed (values: {seen})")
        for label in query.grouping - known:
            problems.append(f"{query.where}: groups by {label!r}, a label none of {sorted(query.metrics)} has")
    assert not problems, "\n".join(problems)


async def test_every_exposed_metric_has_a_panel(exposed: Exposed) -> None:
    shown = {exposed.family_of.get(name) for query in dashboard_queries() for name in query.metrics}
    missing = {family for family in exposed.family_of.values() if family.startswith("herald_")} - shown
    assert not missing, f"no panel in {DASHBOARD.name} shows {sorted(missing)}"
