"""The operators' pages: discovery tasks, server-rendered, usable without JavaScript.

A browser signs in once with a token through the login form, which keeps it in
an HttpOnly, SameSite=Strict cookie; the cookie is honoured by these pages only,
never by the API, so it cannot be used to make changes.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from services.api import tasks
from services.api.auth import Principal, authenticate
from services.api.deps import PAGE_COOKIE, RuntimeDep, SessionDep, page_principal
from services.api.errors import ApiError
from services.api.routes.tasks import task_filters
from shared.events import TaskStatus

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
PAGE_SIZE = 50


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (
        f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    )


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {n}" for name, n in sorted(counts.items()) if n) or "—"


templates.env.filters["when"] = _when
templates.env.filters["duration"] = _duration
templates.env.filters["counts"] = _counts


async def _viewer(
    request: Request, runtime: RuntimeDep, session: SessionDep
) -> Principal | None:
    try:
        return await page_principal(request, runtime, session)
    except ApiError:
        return None


Viewer = Annotated[Principal | None, Depends(_viewer)]


@router.get("/")
async def home() -> RedirectResponse:
    return RedirectResponse("/tasks/", status_code=303)


@router.get("/tasks/", response_class=HTMLResponse)
async def tasks_page(
    request: Request,
    viewer: Viewer,
    session: SessionDep,
    status: Annotated[str | None, Query(max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=512)] = None,
) -> Response:
    if viewer is None:
        return _login(request, "/tasks/")
    wanted = _status(status)
    try:
        items, next_cursor = await tasks.list_tasks(
            session, task_filters(wanted, None, "none", None), PAGE_SIZE, cursor
        )
    except ApiError as error:
        return _problem(request, error.message, 422)

    older = None
    if next_cursor:
        query = {"cursor": next_cursor, **({"status": wanted} if wanted else {})}
        older = "/tasks/?" + urlencode(query)
    return templates.TemplateResponse(
        request,
        "tasks.html",
        {
            "tasks": items,
            "status": wanted,
            "statuses": [s.value for s in TaskStatus],
            "older": older,
            "viewer": viewer,
        },
    )


@router.get("/tasks/{task_id}", response_class=HTMLResponse)
async def task_page(
    request: Request, task_id: str, viewer: Viewer, session: SessionDep
) -> Response:
    if viewer is None:
        return _login(request, f"/tasks/{task_id}")
    try:
        parsed = uuid.UUID(task_id)
    except ValueError:
        return _problem(request, f"{task_id!r} is not a task id", 404)
    task = await tasks.get_task(session, parsed)
    if task is None:
        return _problem(request, f"task {task_id} not found", 404)

    return templates.TemplateResponse(
        request, "task.html", {"task": task, "viewer": viewer}
    )


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/tasks/") -> Response:
    return _login(request, next, status=200)


@router.post("/login")
async def login(request: Request, runtime: RuntimeDep, session: SessionDep) -> Response:
    form = _form(await request.body())
    token = form.get("token", "").strip()
    target = _local(form.get("next", "/tasks/"))
    known = token and await authenticate(session, token, runtime.admin_token_sha256)
    if not known:
        return _login(request, target, error="That token is unknown or revoked.")

    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        PAGE_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return response


@router.post("/logout")
async def logout() -> Response:
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(PAGE_COOKIE)
    return response


def _status(value: str | None) -> TaskStatus | None:
    if not value:
        return None
    try:
        return TaskStatus(value)
    except ValueError:
        return None


def _form(body: bytes) -> dict[str, str]:
    fields: dict[str, Any] = parse_qs(body.decode(errors="replace"), max_num_fields=10)
    return {key: values[0] for key, values in fields.items() if values}


def _local(target: str) -> str:
    """Only paths of this site: a login form must not redirect elsewhere."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/tasks/"
    return target


def _login(
    request: Request, target: str, error: str | None = None, status: int = 401
) -> Response:
    return templates.TemplateResponse(
        request,
        "login.html",
        {"next": _local(target), "error": error, "viewer": None},
        status_code=status,
    )


def _problem(request: Request, message: str, status: int) -> Response:
    return templates.TemplateResponse(
        request,
        "problem.html",
        {"message": message, "viewer": None},
        status_code=status,
    )
