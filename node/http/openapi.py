"""The OpenAPI 3 document, generated from the route registry (:data:`node.http.api.OPERATIONS`)."""

from __future__ import annotations

import re
from typing import Any

from node.http.api import OPERATIONS, Operation
from pcnode import __version__

_PARAM = re.compile(r"<(?:[a-z]+:)?([A-Za-z_][A-Za-z0-9_]*)>")

_ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "error class, e.g. PermissionDenied"},
        "message": {"type": "string"},
        "hint": {"type": "string"},
        "details": {"type": "object", "description": "e.g. the denied 'rule'"},
        "status": {"type": "integer"},
    },
}


def openapi_path(rule: str) -> str:
    """Flask ``/a/<code>`` -> OpenAPI ``/a/{code}``."""
    return _PARAM.sub(r"{\1}", rule)


def _operation(op: Operation) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "operationId": op.endpoint.replace(".", "_"),
        "summary": op.summary,
        "tags": list(op.tags),
        "responses": {
            str(op.ok): {"description": "success", "content": {"application/json": {}}},
            "400": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
        },
    }
    params = [{"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
              for n in _PARAM.findall(op.rule)]
    params += [{"name": p.name, "in": "query", "required": p.required,
                "description": p.description, "schema": {"type": p.type}} for p in op.query]
    if params:
        doc["parameters"] = params
    if op.body is not None:
        doc["requestBody"] = {"required": bool(op.body.get("required")),
                              "content": {"application/json": {"schema": op.body}}}
    if op.roles is None:
        doc["security"] = []
    else:
        doc["x-roles"] = list(op.roles)
        doc["description"] = f"Roles: {', '.join(op.roles)}."
        doc["responses"]["401"] = {"$ref": "#/components/responses/Error"}
        doc["responses"]["403"] = {"$ref": "#/components/responses/Error"}
    return doc


def build_document(node: str = "") -> dict[str, Any]:
    """The OpenAPI 3.0 document for every registered route."""
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        paths.setdefault(openapi_path(op.rule), {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": f"pcnode HTTP API{' - ' + node if node else ''}",
            "version": __version__,
            "description": (
                "Datasets, applications, grants, the peer catalog and regulator views of one "
                "pcnode node. Authenticate with 'Authorization: Bearer TOKEN' (pcnode token "
                "create HOME --role operator|provider|partner|regulator). Errors are JSON "
                "objects {error, message, hint, details, status}; a denial names its rule "
                "in details.rule."
            ),
        },
        "paths": dict(sorted(paths.items())),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Error": _ERROR_SCHEMA},
            "responses": {
                "Error": {"description": "error",
                          "content": {"application/json": {
                              "schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        },
        "security": [{"bearer": []}],
    }
