"""Partner routes: browse a peer's catalog and file applications with it (over mTLS gRPC)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, request

from node.catalog.partner import file_application, refresh_outgoing
from node.http.api import Param, acting_user, api_route, json_body, query_flag, services
from pcnode.errors import ConfigError, NotFound

bp = Blueprint("peers", __name__)


def _known_peer(peer: str) -> None:
    """404 for a peer this node has not configured."""
    try:
        services().config.peer(peer)
    except ConfigError as error:
        raise NotFound(f"no peer named {peer!r} is configured on {services().name}",
                       hint=error.hint) from None

PARTNER = ("partner",)
PARTNER_READERS = ("partner", "operator")

_APPLICATION_BODY = {
    "type": "object",
    "required": ["dataset", "operations", "columns", "purpose", "days"],
    "properties": {
        "dataset": {"type": "string"},
        "operations": {"type": "array", "items": {"type": "string", "enum": ["psi", "stats", "fl"]}},
        "columns": {"type": "array", "items": {"type": "string"}},
        "purpose": {"type": "string", "description": "使用目的"},
        "days": {"type": "integer", "minimum": 1},
    },
}


@api_route(bp, "/api/v1/peers/<peer>/catalog", "GET", roles=PARTNER_READERS,
           summary="List a peer's shareable datasets (metadata only)")
def peer_catalog(peer: str) -> list[dict[str, Any]]:
    """The peer's public listing, fetched over mTLS gRPC."""
    _known_peer(peer)
    return services().peer(peer).list_catalog()


@api_route(bp, "/api/v1/peers/<peer>/applications", "POST", roles=PARTNER,
           summary="File an application with a peer", body=_APPLICATION_BODY, ok=201)
def apply(peer: str) -> dict[str, Any]:
    """Send the application to the provider node and record it here."""
    _known_peer(peer)
    body = json_body()
    return file_application(services().catalog, services().peer(peer), peer, body,
                            user=acting_user())


@api_route(bp, "/api/v1/peers/<peer>/applications/<app_id>", "GET", roles=PARTNER_READERS,
           summary="Refresh and show an application filed with a peer")
def outgoing_status(peer: str, app_id: str) -> dict[str, Any]:
    """Ask the provider for the status, record any decision here, return this node's copy."""
    _known_peer(peer)
    catalog = services().catalog
    catalog.get_outgoing_application(peer, app_id)
    status = services().peer(peer).application_status(app_id)
    return catalog.update_outgoing_application(peer, status, user=acting_user())


@api_route(bp, "/api/v1/outgoing-applications", "GET", roles=PARTNER_READERS,
           summary="List applications this node filed",
           query=[Param("peer", "string"),
                  Param("refresh", "boolean", "ask providers about pending ones first")])
def outgoing_list() -> list[dict[str, Any]]:
    """This node's applications to providers."""
    peer = request.args.get("peer") or None
    if query_flag("refresh"):
        return refresh_outgoing(services().catalog, services().peer, user=acting_user(),
                                peer=peer)
    return services().catalog.list_outgoing_applications(peer=peer)
