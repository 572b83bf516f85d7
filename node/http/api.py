"""Route registry, bearer-token authentication with roles, and request helpers.

Every route is declared with :func:`api_route`, which both adds it to a Flask
blueprint and records it (method, path, roles, summary, parameters, body) in
:data:`OPERATIONS`. The OpenAPI document is generated from that registry, so
it cannot drift from the routes (a test also checks every Flask rule is in it).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, g, request

from node.catalog.tokens import ROLES, TokenInfo
from pcnode.errors import AuthenticationError, InvalidInput, PermissionDenied

#: Every role; use for read-only metadata routes open to all authenticated users.
ALL_ROLES = ROLES


@dataclass(frozen=True)
class Param:
    """A query parameter: name, JSON-schema type, description, whether required."""

    name: str
    type: str = "string"
    description: str = ""
    required: bool = False


@dataclass
class Operation:
    """One documented route."""

    rule: str
    method: str
    endpoint: str
    summary: str
    roles: tuple[str, ...] | None
    query: tuple[Param, ...] = ()
    body: dict[str, Any] | None = None
    ok: int = 200
    tags: tuple[str, ...] = field(default_factory=tuple)


#: The registry the OpenAPI document is built from.
OPERATIONS: list[Operation] = []


def api_route(
    bp: Blueprint,
    rule: str,
    method: str,
    *,
    summary: str,
    roles: Sequence[str] | None,
    query: Sequence[Param] = (),
    body: dict[str, Any] | None = None,
    ok: int = 200,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a route: Flask rule + roles allowed (None = no authentication) + docs."""

    def deco(fn: Callable[..., Any]) -> Callable[..., Any]:
        endpoint = fn.__name__

        @functools.wraps(fn)
        def view(**kwargs: Any) -> Any:
            if roles is not None:
                authenticate(tuple(roles), summary)
            result = fn(**kwargs)
            if ok != 200 and isinstance(result, (dict, list)):
                return result, ok
            return result

        bp.add_url_rule(rule, endpoint=endpoint, view_func=view, methods=[method])
        OPERATIONS.append(Operation(rule, method, f"{bp.name}.{endpoint}", summary,
                                    None if roles is None else tuple(roles), tuple(query), body,
                                    ok, (bp.name,)))
        return view

    return deco


def services() -> Any:
    """The NodeServices the app was created with."""
    return current_app.config["PCNODE_SERVICES"]


def authenticate(roles: tuple[str, ...], action: str) -> TokenInfo:
    """Check the bearer token (401 if missing/unknown) and its role (403 if not in ``roles``)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError(
            "missing bearer token",
            hint="send 'Authorization: Bearer TOKEN'; create one with: pcnode token create HOME --role ROLE",
        )
    info = services().catalog.verify_token(token.strip())
    if info.role not in roles:
        raise PermissionDenied(
            f"role {info.role!r} may not do this: {action[:1].lower() + action[1:]}",
            hint=f"this needs a token with role {' or '.join(roles)}",
            rule="role", role=info.role,
        )
    g.token = info
    return info


def acting_user() -> str:
    """The ledger's acting user for this request: the token's name and role."""
    info: TokenInfo = g.token
    return info.user


def json_body() -> dict[str, Any]:
    """The request body as a JSON object; InvalidInput (400) if absent or malformed."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        raise InvalidInput("request body is empty; expected a JSON object")
    data = request.get_json(force=True, silent=True)
    if data is None:
        raise InvalidInput("request body is not valid JSON")
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    return data


def optional_body() -> dict[str, Any]:
    """Like :func:`json_body`, but an empty body is ``{}``."""
    if not request.get_data(cache=True).strip():
        return {}
    return json_body()


_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list, str),
    "object": (dict,),
}


def field_of(body: dict[str, Any], name: str, kind: str, *, required: bool = False,
             default: Any = None) -> Any:
    """Field ``name`` of ``body``, checked against a JSON-schema ``kind``."""
    if name not in body or body[name] is None:
        if required:
            raise InvalidInput(f"missing field {name!r}")
        return default
    value = body[name]
    ok = isinstance(value, _TYPES[kind])
    if kind in ("integer", "number") and isinstance(value, bool):
        ok = False
    if not ok:
        raise InvalidInput(f"field {name!r} must be {'an' if kind[0] in 'aeiou' else 'a'} {kind}")
    return value


def query_int(name: str, default: int | None = None, minimum: int = 0) -> int | None:
    """Integer query parameter ``name``; InvalidInput if it is not one."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name!r} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise InvalidInput(f"query parameter {name!r} must be >= {minimum}")
    return value


def query_time(name: str) -> dt.datetime | None:
    """ISO-8601 query parameter ``name`` as an aware datetime (UTC if no zone)."""
    raw = request.args.get(name)
    if not raw:
        return None
    try:
        value = dt.datetime.fromisoformat(raw)
    except ValueError:
        raise InvalidInput(f"query parameter {name!r} must be an ISO-8601 time, got {raw!r}"
                           ) from None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def query_flag(name: str) -> bool:
    """Boolean query parameter: 1/true/yes are true."""
    return request.args.get(name, "").lower() in ("1", "true", "yes")
