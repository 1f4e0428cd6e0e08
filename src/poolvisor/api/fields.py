"""The annotated types that every request model and route parameter is built from.

One type per rule, so a rule holds on every route by construction and the OpenAPI document states
it: `Name` (path, query and body names), `Text` (free text: no control or bidirectional
formatting characters), `Demand` (demands and capacities: typed keys and values, at least one
positive amount), `IsoDateTime` (ISO 8601 strings only, 1970..2099), `QueryBool` (only
`true`/`false`), `QUERY_INT`/`QUERY_FLOAT` (JSON number syntax in queries), `INTEGRAL` (an integer
is a JSON number with an integral value), and `StrictModel`, the base of every request body: a
JSON boolean is a boolean and a JSON number a number (pydantic strict mode; an integer is still
accepted where a float is expected).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from fastapi import Path
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from poolvisor.domain.resources import MAX_QUANTITY
from poolvisor.domain.text import MAX_NAME_LEN, NAME_PATTERN, NAME_RULE, TEXT_PATTERN

RESOURCE_PATTERN = r"^[a-z][a-z0-9_]{0,62}$"
MAX_MAP_ENTRIES = 32


class StrictModel(BaseModel):
    """Base of every request body: unknown fields are errors (a typo must not be silently ignored),
    and values are not coerced ("yes" is not true, true is not 1, "1" is not a number)."""

    model_config = ConfigDict(extra="forbid", strict=True)


Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LEN, pattern=NAME_PATTERN)]
NamePath = Annotated[Name, Path(description=NAME_RULE)]
"""The one type of every `{name}` path parameter: an invalid name is a 422 on every route."""


Text = Annotated[str, StringConstraints(pattern=TEXT_PATTERN)]
"""Free text: any Unicode except control and bidirectional formatting characters."""
Description = Annotated[Text, StringConstraints(max_length=1000)]


def _integral(v: object) -> object:
    return int(v) if isinstance(v, float) and v.is_integer() else v


INTEGRAL = BeforeValidator(_integral)
"""Metadata for an `int` field, after its constraints (`Annotated[int, Field(ge=0), INTEGRAL]`;
before them pydantic cannot put the bounds in the schema): a JSON number with an integral value
(7 or 7.0, as JSON Schema's `integer` reads it), never a boolean or a string."""

#: the balancing policies plan_balancing knows by name (policies/balancing/planner.policy_named)
BALANCING_POLICY_PATTERN = (r"^(pack|spread|adaptive(-0*[1-9][0-9]{0,5}(\.[0-9]{1,6})?)?|"
                            r"(thr|iqr|mad|lr|lrr)-(mmt|mu|mc|rs|lp)(-[0-9]{1,6}(\.[0-9]{1,6})?)?)$")
BALANCING_POLICY_RULE = ("unknown balancing policy: use pack, spread, adaptive[-safety] (safety >= 1) or "
                         "<thr|iqr|mad|lr|lrr>-<mmt|mu|mc|rs|lp>[-param]")

ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=RESOURCE_PATTERN)]
Amount = Annotated[float, Field(ge=0, le=MAX_QUANTITY, allow_inf_nan=False)]
Ratio = Annotated[float, Field(gt=0, le=1000, allow_inf_nan=False)]
LabelValue = Annotated[Text, StringConstraints(max_length=MAX_NAME_LEN)]


class TypedMap:
    """Render `dict[K, V]` as `propertyNames: K` and `additionalProperties: V`.

    pydantic writes a constrained key type as `patternProperties`, which leaves every key that
    misses the pattern free to hold any value; the server rejects those keys, so the schema must."""

    def __get_pydantic_json_schema__(self, cs: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        js = handler(cs)
        pattern_props = js.pop("patternProperties", None)
        if pattern_props:
            [(pattern, value)] = pattern_props.items()
            js["propertyNames"] = {**js.get("propertyNames", {}), "pattern": pattern}
            js["additionalProperties"] = value
        return js


class SomePositive:
    """A map of amounts >= 0 where at least one amount is > 0 (stated as: not all values are 0)."""

    def __get_pydantic_json_schema__(self, cs: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        js = handler(cs)
        js["not"] = {"additionalProperties": {"type": "number", "maximum": 0}}
        return js


def _some_positive(amounts: dict[str, float]) -> dict[str, float]:
    if not any(v > 0 for v in amounts.values()):
        raise ValueError("must request a positive amount of at least one resource")
    return amounts


Demand = Annotated[dict[ResourceName, Amount], Field(max_length=MAX_MAP_ENTRIES), TypedMap(),
                   AfterValidator(_some_positive), SomePositive()]
"""Resource -> amount with at least one positive amount (demands and capacities)."""
Overcommit = Annotated[dict[ResourceName, Ratio], Field(max_length=MAX_MAP_ENTRIES), TypedMap()]
Labels = Annotated[dict[Name, LabelValue], Field(max_length=MAX_MAP_ENTRIES), TypedMap()]


# ---- date-times ---------------------------------------------------------------------------------
# ISO 8601 / RFC 3339 with an optional offset (none = UTC), limited to the instants the store
# accepts (1970-01-01T00:00Z .. 2100-01-01T00:00Z): years 1970..2099, except that an offset may not
# move 1970-01-01 before the epoch or 2099-12-31 past 2100.
_DAY = r"(0[1-9]|[12][0-9]|3[01])"
_TIME = r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?"
_HHMM = r"([01][0-9]|2[0-3]):[0-5][0-9]"
_ANY_OFFSET = rf"([Zz]|[+-]{_HHMM})?"
_MIDDLE = (rf"((197[1-9]|19[89][0-9]|20[0-8][0-9]|209[0-8])-(0[1-9]|1[0-2])-{_DAY}"
           rf"|1970-((0[2-9]|1[0-2])-{_DAY}|01-(0[2-9]|[12][0-9]|3[01]))"
           rf"|2099-((0[1-9]|1[01])-{_DAY}|12-(0[1-9]|[12][0-9]|30)))")
DATETIME_PATTERN = (rf"^({_MIDDLE}{_TIME}{_ANY_OFFSET}"
                    rf"|1970-01-01{_TIME}([Zz]|-{_HHMM}|\+00:00)?"
                    rf"|2099-12-31{_TIME}([Zz]|\+{_HHMM}|-00:00)?)$")
_DATETIME = re.compile(DATETIME_PATTERN)


def _iso_datetime(v: object) -> datetime:
    if not isinstance(v, str) or _DATETIME.fullmatch(v) is None:
        raise ValueError("must be an ISO 8601 date-time string between 1970 and 2099, "
                         "e.g. 2024-05-01T12:00:00Z (no offset = UTC)")
    try:
        return datetime.fromisoformat(v.upper())  # Python 3.11 reads only T and Z
    except ValueError as e:
        raise ValueError(f"invalid date-time: {e}") from None


class _DateTimeSchema:
    """The exact rule as the schema: a date-time string whose pattern admits only storable instants."""

    def __get_pydantic_json_schema__(self, cs: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        # no "format": "date-time": RFC 3339 requires an offset, and this rule accepts none (= UTC),
        # so that format would call valid input invalid; the pattern states the rule exactly
        return {"type": "string", "pattern": DATETIME_PATTERN}


IsoDateTime = Annotated[datetime, BeforeValidator(_iso_datetime), _DateTimeSchema()]
"""A date-time given as an ISO 8601 string (never a number or a bare date)."""


# ---- query parameters ---------------------------------------------------------------------------
def _true_false(v: object) -> object:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ValueError("must be true or false")


QueryBool = Annotated[bool, BeforeValidator(_true_false)]
"""A query flag: exactly `true` or `false` (pydantic alone would also read yes, on, 1, t...)."""

_JSON_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


def _query_float(v: object) -> object:
    if isinstance(v, str):
        if _JSON_NUMBER.fullmatch(v) is None:
            raise ValueError("must be a number (JSON syntax: no spaces, '_', inf or nan)")
        return float(v)
    return v


def _query_int(v: object) -> object:
    if isinstance(v, str):
        if _JSON_NUMBER.fullmatch(v) is None:
            raise ValueError("must be an integer")
        if v.lstrip("-").isdigit():
            return int(v)
        f = float(v)
        if not f.is_integer():
            raise ValueError("must be an integer")
        return int(f)
    return v


QUERY_FLOAT = BeforeValidator(_query_float)
"""Metadata for a query `float`, after its constraints: JSON number syntax (pydantic alone would
also read ' 2 ', '1_000', 'inf')."""
QUERY_INT = BeforeValidator(_query_int)
"""Metadata for a query `int`, after its constraints: JSON number syntax with an integral value
('5' or '5.0', not '5_0' or ' 5')."""
