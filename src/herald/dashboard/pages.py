"""The dashboard's pages: integrations (health, chart, enable/disable), logs (filters, paging, live), a job.

Every query is scoped to the signed-in store; an id of another store's is answered 404, as if it did not exist.
Changes go through the same code as the API (`db.integrations.change`, `db.jobs.retry`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from herald.dashboard import chart
from herald.dashboard.web import PageError, form_with_csrf, fragment, page, redirect, visitor
from herald.db import events, integrations, jobs, logs, minutes
from herald.domain.destinations import DESTINATIONS, stored
from herald.domain.ids import is_id, utcnow
from herald.domain.masking import mask_configuration
from herald.domain.messages import OutboundMessage

router = APIRouter(prefix="/dashboard", include_in_schema=False)
PAGE_SIZE = 50
LIVE_LIMIT = 100
NO_LOG_YET = "0"  # a cursor below every id: the store had no log when the page was made
RANGES = {"1h": (timedelta(hours=1), "the last hour"), "24h": (timedelta(hours=24), "the last 24 hours")}


def _not_found() -> PageError:
    return PageError(404, "Not found", "There is nothing here, or it belongs to another store.")


# --- integrations ----------------------------------------------------------------------------------------------


@router.get("")
async def integrations_page(request: Request) -> Response:
    who = await visitor(request)
    span_key = request.query_params.get("range", "1h")
    span, label = RANGES.get(span_key, RANGES["1h"])
    now = utcnow()
    async with request.app.state.db.read() as conn:
        rows = await integrations.every(conn, who.store.id)
        health = await logs.health(conn, who.store.id, [r["id"] for r in rows], now - timedelta(hours=24))
        series = await minutes.series(conn, who.store.id, now - span + timedelta(minutes=1), now)
    items = [{**r, "target": stored(r["integration_type"], r["configuration"]).target(), "health": health[r["id"]]}
             for r in rows]
    return page(request, "integrations.html", visitor=who, items=items, chart=chart.draw(series, label),
                range=span_key if span_key in RANGES else "1h", ranges=RANGES,
                changed=request.query_params.get("changed"))


@router.post("/integrations/{integration_id}/{action}")
async def switch(request: Request, integration_id: str, action: str) -> Response:
    who = await visitor(request)
    await form_with_csrf(request, who.session.csrf)
    if action not in ("enable", "disable") or not is_id(integration_id):
        raise _not_found()
    async with request.app.state.db.write() as conn:
        row = await integrations.get(conn, who.store.id, integration_id)
        if row is None:
            raise _not_found()
        enabled = action == "enable"
        if row["enabled"] != enabled:
            await integrations.change(conn, row, {"enabled": enabled}, utcnow(), request.app.state.operator_events)
    return redirect(f"/dashboard?{urlencode({'changed': integration_id})}")


# --- logs ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LogFilters:
    """The logs page's filters as they are in the URL, so that a filtered view can be shared."""

    integration: str = ""
    outcome: str = ""  # "", "succeeded" or "failed"
    status: str = ""
    since: str = ""  # datetime-local text, UTC
    until: str = ""

    @classmethod
    def of(cls, request: Request) -> tuple[LogFilters, list[str]]:
        q = request.query_params
        found = cls(q.get("integration", "").strip(), q.get("outcome", ""), q.get("status", "").strip(),
                    q.get("since", "").strip(), q.get("until", "").strip())
        problems = []
        if found.integration and not is_id(found.integration):
            problems.append("There is no such integration.")
        if found.outcome not in ("", "succeeded", "failed"):
            problems.append("Outcome must be succeeded or failed.")
        if found.status and not (found.status.isdigit() and 100 <= int(found.status) <= 599):
            problems.append("A status code is a number from 100 to 599.")
        for name in ("since", "until"):
            if getattr(found, name) and _moment(getattr(found, name)) is None:
                problems.append(f"“{getattr(found, name)}” is not a date and time.")
        return found, problems

    def query(self, **more: str) -> str:
        values = {k: v for k, v in (("integration", self.integration), ("outcome", self.outcome),
                                    ("status", self.status), ("since", self.since), ("until", self.until)) if v}
        values.update({k: v for k, v in more.items() if v})
        return urlencode(values)

    def arguments(self) -> dict[str, Any]:
        return {
            "integration_id": self.integration or None,
            "succeeded": {"succeeded": True, "failed": False}.get(self.outcome),
            "status_code": int(self.status) if self.status.isdigit() else None,
            "since": _moment(self.since),
            "until": _moment(self.until),
        }


def _moment(text: str) -> datetime | None:
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.get("/logs")
async def logs_page(request: Request) -> Response:
    who = await visitor(request)
    filters, problems = LogFilters.of(request)
    before = request.query_params.get("before") or None
    if before is not None and not is_id(before):
        problems.append("That page of logs does not exist; start from the newest.")
    rows: list[dict[str, Any]] = []
    live = None
    async with request.app.state.db.read() as conn:
        names = dict(await integrations.names(conn, who.store.id))
        if not problems:
            rows = await logs.browse(conn, who.store.id, **filters.arguments(), before=before, limit=PAGE_SIZE + 1)
        if before is None and not problems:  # the first page follows new logs, from the newest there is now
            newest = rows[0]["id"] if rows else await logs.newest_id(conn, who.store.id)
            live = f"/dashboard/logs/rows?{filters.query(after=newest or NO_LOG_YET)}"
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    older = f"/dashboard/logs?{filters.query(before=rows[-1]['id'])}" if more else None
    return page(request, "logs.html", visitor=who, rows=rows, names=names, filters=filters, problems=problems,
                older=older, newest=f"/dashboard/logs?{filters.query()}" if before else None, live=live,
                integrations=sorted(names.items(), key=lambda item: item[1].lower()))


@router.get("/logs/rows")
async def new_log_rows(request: Request) -> Response:
    """Logs newer than `after`, newest first, as table rows; X-Herald-After is where to look from next time."""
    who = await visitor(request)
    filters, problems = LogFilters.of(request)
    after = request.query_params.get("after") or NO_LOG_YET
    if after != NO_LOG_YET and not is_id(after):
        problems.append("The cursor is not a log id.")
    if problems:
        raise PageError(400, "Bad filters", " ".join(problems))
    async with request.app.state.db.read() as conn:
        rows = await logs.browse(conn, who.store.id, **filters.arguments(), after=after, limit=LIVE_LIMIT)
        names = dict(await integrations.names(conn, who.store.id)) if rows else {}
    cursor = rows[0]["id"] if rows else after
    return fragment(request, "_log_rows.html", headers={"X-Herald-After": cursor}, rows=rows, names=names)


# --- a job -----------------------------------------------------------------------------------------------------


async def _job_view(request: Request, store_id: str, job_id: str) -> dict[str, Any]:
    if not is_id(job_id):
        raise _not_found()
    async with request.app.state.db.read() as conn:
        job = await jobs.find(conn, store_id, job_id)
        if job is None:
            raise _not_found()
        integration = await integrations.get_any(conn, store_id, job["integration_id"])
        event = await events.get(conn, store_id, job["event_id"])
        attempts = await logs.of_job(conn, store_id, job_id)
    if integration is None or event is None:
        raise _not_found()
    message = OutboundMessage(
        job_id=job["id"], event_id=event.id, store_id=store_id, triggered_by=event.triggered_by,
        attempt=max(job["attempts"], 1), payload_json=event.payload or "null", event_created_at=event.created_at,
        integration_id=integration["id"], integration_type=integration["integration_type"],
        integration_name=integration["name"], integration_description=integration["description"],
        configuration=integration["configuration"],
    )
    kind = DESTINATIONS.get(integration["integration_type"])
    sent = kind.body(message).decode() if kind else ""
    return {
        "job": job, "integration": integration, "event": event, "attempts": attempts,
        "payload": orjson.dumps(orjson.loads(event.payload or "null"), option=orjson.OPT_INDENT_2).decode(),
        "sent": sent, "configuration": mask_configuration(integration["configuration"]),
        "next_attempt": job["run_at"] if job["status"] == "pending" else None,
        "retryable": job["status"] in jobs.RETRYABLE,
    }


@router.get("/jobs/{job_id}")
async def job_page(request: Request, job_id: str) -> Response:
    who = await visitor(request)
    view = await _job_view(request, who.store.id, job_id)
    return page(request, "job.html", visitor=who, retried=request.query_params.get("retried") == "1", **view)


@router.get("/jobs/{job_id}/live")
async def job_live(request: Request, job_id: str) -> Response:
    """The job's state and attempts, which the page fetches again every few seconds."""
    who = await visitor(request)
    view = await _job_view(request, who.store.id, job_id)
    version = f"{view['job']['status']}:{view['job']['attempts']}:{len(view['attempts'])}"
    return fragment(request, "_job_live.html", headers={"X-Herald-Version": version}, visitor=who, **view)


@router.post("/jobs/{job_id}/retry")
async def retry_job(request: Request, job_id: str) -> Response:
    who = await visitor(request)
    await form_with_csrf(request, who.session.csrf)
    if not is_id(job_id):
        raise _not_found()
    async with request.app.state.db.write() as conn:
        job = await jobs.find(conn, who.store.id, job_id)
        if job is None:
            raise _not_found()
        if job["status"] in jobs.RETRYABLE:
            await jobs.retry(conn, who.store.id, job["integration_id"], job_id, utcnow())
    return redirect(f"/dashboard/jobs/{job_id}?retried=1")
