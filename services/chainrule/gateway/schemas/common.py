"""Replies shared by every resource: errors, probes, the version."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Message(BaseModel):
    """An error a person can act on: what was wrong, and what is allowed."""

    detail: str


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='where: ["body", "training", "steps"], ...')
    msg: str
    type: str
    input: Any = None
    ctx: dict[str, Any] | None = None


class FieldErrors(BaseModel):
    """A request that does not validate: one entry per offending field (FastAPI's 422)."""

    detail: list[FieldError]


class Health(BaseModel):
    status: str = Field(description="ok, or unavailable")
    redis: str | None = Field(default=None, description="readiness only: ok, or the error")


class VersionOut(BaseModel):
    version: str = Field(description="the chainrule package version", examples=["0.1.0"])
    api: str = Field(description="the REST API version, the path segment after /api/")


def not_found(what: str) -> dict[int | str, dict[str, Any]]:
    return {404: {"model": Message, "description": f"no {what} with that id"}}


BAD_BODY: dict[int | str, dict[str, Any]] = {
    400: {"model": Message, "description": "the body does not parse (not JSON, not UTF-8)"}
}
