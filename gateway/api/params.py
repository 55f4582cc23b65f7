"""The HTTP API's parameters and bodies, each described as exactly as it is checked, so
that the OpenAPI document is the contract: what it allows is served, what it does not
is refused with 400 (tests/test_api_fuzz.py holds both to it)."""

from datetime import datetime
from typing import Annotated, Literal

from annotated_types import Interval
from fastapi import Path, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, FiniteFloat, create_model

from .. import protocol, unit_settings
from ..centre import INCIDENT_KINDS, UNIT_KINDS
from ..errors import BadRequest
from ..statuses import AVAILABILITIES

UnitKind = Literal[UNIT_KINDS]
Availability = Literal[AVAILABILITIES]
IncidentKind = Literal[tuple(INCIDENT_KINDS)]

UNIT_ID = Path(pattern=protocol.UNIT_ID.pattern, description="a unit id (docs/protocol.md)")
UNIT_ID_QUERY = Query(None, pattern=protocol.UNIT_ID.pattern)

# A time: Unix seconds, or an ISO 8601 date-time with its offset (`Z`, `+07:00`).
UnixSeconds = Annotated[FiniteFloat, "Unix seconds"]
Time = UnixSeconds | datetime


FROM = Query(None, alias="from", description="from: Unix seconds or ISO 8601 with an offset")
TO = Query(None, alias="to", description="to: Unix seconds or ISO 8601 with an offset")


def integral(value):
    """1.0 is the integer 1 in JSON (and its schema); 1.5 and "1" are not."""
    return int(value) if type(value) is float and value.is_integer() else value


Integer = Annotated[int, BeforeValidator(integral)]

# Free text (a callsign, a reason, a note): anything but NUL, which a PostgreSQL text
# column cannot hold (and no dispatcher types); refused with 400 on either store.
TEXT = r"^[^\x00]*$"


class Strict(BaseModel):
    """Every request body: exact types (no "1" for 1, no false for 0.0), no unknown
    fields, no NaN or infinite numbers; anything else is 400."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


_QUERY_NAMES = {}  # id(route) -> the query parameters it takes


def _query_names(dependant):
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _query_names(sub)
    return names


async def known_query(request: Request):
    """An app-wide dependency: a query parameter the route does not take is refused (a
    misspelt `?form=` would otherwise be silently ignored)."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    names = _QUERY_NAMES.get(id(route))
    if names is None:  # routes live as long as the app: their ids stay theirs
        names = _QUERY_NAMES[id(route)] = _query_names(dependant)
    unknown = sorted(set(request.query_params) - names)
    if unknown:
        takes = ", ".join(sorted(names)) or "none"
        raise BadRequest(f"unknown query parameter {unknown[0][:40]!r} (this takes: {takes})")


def _described(schema):
    """At least one setting; a setting left out is not pushed (there is no null value)."""
    schema["minProperties"] = 1
    for prop in schema.get("properties", {}).values():
        prop.pop("default", None)


def settings_model():
    """The pydantic model of a push's `values`, from unit_settings.SETTINGS: each setting optional, with
    its type and range, nothing else, at least one; the OpenAPI document shows it."""
    fields = {}
    for name, (kind, lo, hi) in unit_settings.SETTINGS.items():
        if kind == "keys":
            key = Annotated[int, Interval(ge=0, le=9), BeforeValidator(integral)]
            unique = {"uniqueItems": True}
            fields[name] = (list[key], Field(None, min_length=lo, max_length=hi, json_schema_extra=unique))
        else:
            fields[name] = (Integer if kind is int else float, Field(None, ge=lo, le=hi))
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, json_schema_extra=_described)
    return create_model("UnitSettings", __config__=config, **fields)
