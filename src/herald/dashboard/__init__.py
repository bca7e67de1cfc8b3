"""The dashboard at /dashboard: server-rendered pages for a store's integrations, logs and jobs.

`install(app)` adds its routes (after the API's, so that no API request pays for matching them), its static
files and its error pages. Sign-in is per store (client id and secret, or a one-time link from
POST /v2/dashboard/links); see `signin`, `pages` and `web`."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, Response
from fastapi.staticfiles import StaticFiles

from herald.dashboard import pages, signin
from herald.dashboard.web import HERE, PageError, SignInNeeded, page_error, sign_in_needed


def install(app: FastAPI) -> None:
    app.include_router(signin.router)
    app.include_router(pages.router)
    router = APIRouter(prefix="/dashboard", include_in_schema=False)

    @router.get("/{rest:path}")
    async def nothing_here(request: Request, rest: str) -> Response:
        raise PageError(404, "Not found", "There is no such page in the dashboard.")

    app.mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static")
    app.include_router(router)  # last: only what nothing else matched

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return FileResponse(HERE / "static" / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    app.add_exception_handler(PageError, page_error)
    app.add_exception_handler(SignInNeeded, sign_in_needed)
