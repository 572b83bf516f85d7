"""The partner side of the application flow, shared by the CLI and the HTTP API.

A partner node files an application with a provider over gRPC (through a
``PeerClient``), keeps its own copy, and records each step in its own ledger.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from node.catalog.applications import PENDING, validate_application_body
from pcnode.errors import PcnodeError

if TYPE_CHECKING:
    from node.catalog.catalog import Catalog


def file_application(catalog: Catalog, client: Any, peer: str, body: dict[str, Any], *,
                     user: str) -> dict[str, Any]:
    """Send an application to ``peer`` through ``client`` and record it here.

    ``body`` holds dataset, operations (or ops), columns, purpose and days; the
    acting user is added as ``requested_by``. Returns this node's copy,
    including the provider's application id.
    """
    app = validate_application_body({**body, "requested_by": user})
    response = client.submit_application(app)
    if not isinstance(response, dict):
        raise PcnodeError(f"{peer} answered the application with something that is not an object")
    return catalog.record_outgoing_application(peer, app, response, user=user)


def refresh_outgoing(catalog: Catalog, client_for: Callable[[str], Any], *, user: str,
                     peer: str | None = None) -> list[dict[str, Any]]:
    """Ask providers for the status of every pending application this node filed.

    Decisions are recorded in this node's ledger. A provider that cannot be
    reached leaves its applications as they were (``refresh_error`` is set on
    them) rather than failing the whole listing.
    """
    apps = catalog.list_outgoing_applications(peer=peer)
    out = []
    for app in apps:
        if app["status"] == PENDING:
            try:
                status = client_for(app["peer"]).application_status(app["id"])
                app = catalog.update_outgoing_application(app["peer"], status, user=user)
            except PcnodeError as error:
                app = {**app, "refresh_error": str(error)}
        out.append(app)
    return out
