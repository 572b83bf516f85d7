"""``create_app(services)``: the Flask app served by waitress inside ``pcnode serve``."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

from flask import Blueprint, Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from node.http import routes_catalog, routes_ledger, routes_peers
from node.http.api import api_route, services
from node.http.openapi import build_document
from pcnode.errors import InternalError, PcnodeError, status_for

log = logging.getLogger(__name__)

meta = Blueprint("meta", __name__)


@api_route(meta, "/healthz", "GET", roles=None, summary="Liveness check")
def healthz() -> dict[str, Any]:
    """200 with the node name while the process serves requests."""
    return {"status": "ok", "node": services().name}


@api_route(meta, "/openapi.json", "GET", roles=None, summary="This API's OpenAPI 3 document")
def openapi() -> dict[str, Any]:
    """The OpenAPI document, generated from the route registry."""
    return build_document(services().name)


def _error_response(error: PcnodeError) -> Response:
    _, http = status_for(error)
    body = error.to_dict() | {"status": http}
    response = jsonify(body)
    response.status_code = http
    if http == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pcnode"'
    return response


def create_app(node_services: Any) -> Flask:
    """Build the WSGI app for one node's ``NodeServices`` (or anything with the same attributes:
    ``name``, ``config``, ``catalog``, ``ledger``, ``peer(name)``)."""
    app = Flask("pcnode")
    app.config["PCNODE_SERVICES"] = node_services
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    for bp in (meta, routes_catalog.bp, routes_peers.bp, routes_ledger.bp):
        app.register_blueprint(bp)

    @app.errorhandler(PcnodeError)
    def _pcnode_error(error: PcnodeError) -> Response:
        return _error_response(error)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        response = jsonify({"error": type(error).__name__, "message": error.description or "",
                            "hint": "see /openapi.json for the routes", "details": {},
                            "status": error.code})
        response.status_code = error.code or 500
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        # No raw values in logs: the class name and a digest of the message only.
        digest = hashlib.sha256(str(error).encode()).hexdigest()[:16]
        log.error("unexpected %s in HTTP handler (digest %s)", type(error).__name__, digest)
        return _error_response(InternalError(
            f"internal error ({type(error).__name__}, digest {digest})",
            hint="report it with the node log"))

    return app
