"""The spec's shared pieces: its model config and the errors its checks raise (each a
pydantic error with a type of its own and a message naming the value and what is allowed)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import ConfigDict, GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationError
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, InitErrorDetails, PydanticCustomError, core_schema

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


@dataclass(frozen=True)
class Checked:
    """``Annotated`` metadata: a strict value of ``strict_schema``, then ``check`` (our
    error, naming the field, the value and what is allowed, where pydantic's own ``ge``,
    ``le`` or ``Literal`` would not); ``extra`` joins the JSON schema. Made by
    :func:`between` and :func:`one_of`."""

    strict_schema: CoreSchema
    check: Callable[[Any], Any]
    extra: dict[str, Any]

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, self.strict_schema)

    def __get_pydantic_json_schema__(
        self, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {**handler(schema), **self.extra}


def between(name: str, low: int, high: int) -> Checked:
    """``Annotated[int, between("workers", 1, 256)]``: a strict integer from ``low`` to
    ``high`` (``workers must be between 1 and 256; got 0``), the range in the schema."""
    strict = core_schema.int_schema(strict=True)
    return Checked(strict, int_between(name, low, high), bounds(low, high))


def one_of(kind: str, what: str, allowed: tuple[str, ...]) -> Checked:
    """``Annotated[str, one_of("mode", "mode", MODES)]``: a strict string among ``allowed``
    (else an ``unknown_<kind>`` error listing them), an enum in the schema."""
    strict = core_schema.str_schema(strict=True)
    return Checked(strict, choice(kind, what, allowed), enum_of(allowed))
