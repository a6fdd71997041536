"""Opaque keyset cursors: the last row's sort key, tied to the list it came from."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field
from sqlalchemy import BindParameter, bindparam

from services.api.errors import invalid

T = TypeVar("T")

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Limit = Annotated[
    int,
    Query(ge=1, le=MAX_LIMIT, description=f"Page size, at most {MAX_LIMIT}."),
]
CursorParam = Annotated[
    str | None,
    Query(
        max_length=512,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="`next_cursor` of the previous page; omit for the first page.",
    ),
]


class Page(BaseModel, Generic[T]):
    """One page of a list, newest or lowest key first; follow `next_cursor`."""

    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


def rows_at_most(count: int) -> BindParameter[int]:
    """A LIMIT written into the SQL rather than bound.

    The API runs generic plans (see `make_read_engine`); a bound LIMIT would
    be planned as if a tenth of the table were wanted, a written one lets
    PostgreSQL plan for the few rows a page needs. Each page size is a
    statement of its own, prepared once per connection.
    """
    return bindparam("rows_at_most", count, literal_execute=True)


def encode_cursor(scope: str, key: list[Any]) -> str:
    raw = json.dumps({"s": scope, "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str, arity: int) -> list[Any]:
    """The key a cursor carries; 422 when it is not one this list handed out."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid("cursor", "not a cursor this API handed out") from None
    if not isinstance(data, dict) or data.get("s") != scope:
        raise invalid("cursor", "this cursor belongs to another list")
    key = data.get("k")
    if (
        not isinstance(key, list)
        or len(key) != arity
        or not all(isinstance(part, str) and _storable(part) for part in key)
    ):
        raise invalid("cursor", "not a cursor this API handed out")
    return key


def _storable(text: str) -> bool:
    """Text PostgreSQL can compare: valid UTF-8 (no lone surrogates), no NUL."""
    if "\x00" in text:
        return False
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
