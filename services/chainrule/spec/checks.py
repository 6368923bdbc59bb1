"""The spec's shared pieces: its model config and the errors its checks raise (each a
pydantic error with a type of its own and a message naming the value and what is allowed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import ConfigDict, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

FORBID = ConfigDict(extra="forbid", frozen=True)


def error(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def field_error(
    title: str, loc: tuple[str | int, ...], kind: str, message: str, value: Any
) -> ValidationError:
    """An error on a field below the one being validated (``loc`` is relative to it)."""
    detail: InitErrorDetails = {"type": error(kind, message), "loc": loc, "input": value}
    return ValidationError.from_exception_data(title, [detail])


def int_between(name: str, low: int, high: int) -> Callable[[int], int]:
    def check(value: int) -> int:
        if not low <= value <= high:
            raise error("out_of_range", f"{name} must be between {low} and {high}; got {value}")
        return value

    return check


def choice(kind: str, what: str, allowed: tuple[str, ...]) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in allowed:
            raise error(
                f"unknown_{kind}",
                f"unknown {what} {value!r}; expected one of: {', '.join(allowed)}",
            )
        return value

    return check


def bounds(low: float, high: float) -> dict[str, Any]:
    return {"minimum": low, "maximum": high}


def enum_of(allowed: tuple[str, ...]) -> dict[str, Any]:
    return {"enum": list(allowed)}
