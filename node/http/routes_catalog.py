"""Routes for this node's own catalog: datasets, applications filed with it, its grants."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g

from node.catalog.grants import DEFAULT_K, DEFAULT_PSI_MODES, DEFAULT_QUOTA, parse_list
from node.catalog.sources import open_source
from node.http.api import (
    ALL_ROLES,
    Param,
    acting_user,
    api_route,
    field_of,
    json_body,
    optional_body,
    query_flag,
    services,
)

bp = Blueprint("catalog", __name__)

READERS = ("operator", "provider", "regulator")
PROVIDER = ("provider",)

_DATASET_BODY = {
    "type": "object",
    "required": ["code", "name", "key", "level", "share"],
    "properties": {
        "code": {"type": "string", "description": "resource code (信息资源代码)"},
        "name": {"type": "string"},
        "file": {"type": "string", "description": "CSV or Parquet path on the node's host"},
        "sql": {"type": "string", "description": "SQLAlchemy URL of a SQLite/PostgreSQL database"},
        "table": {"type": "string", "description": "table name, with sql"},
        "key": {"type": "string", "description": "key column used for joining"},
        "level": {"type": "string", "enum": ["L1", "L2", "L3", "L4"]},
        "share": {"type": "string", "enum": ["unconditional", "conditional", "none"]},
        "meta": {"type": "object", "description": "core metadata, as in a --meta TOML file"},
        "replace": {"type": "boolean", "description": "re-register an existing dataset"},
        "reason": {"type": "string"},
    },
}
_REASON_BODY = {"type": "object", "properties": {"reason": {"type": "string"}}}
_APPROVE_BODY = {
    "type": "object",
    "properties": {
        "k": {"type": "integer", "minimum": 1, "default": DEFAULT_K},
        "quota": {"type": "integer", "minimum": 1, "default": DEFAULT_QUOTA},
        "psi_modes": {"type": "array", "items": {"type": "string"},
                      "default": list(DEFAULT_PSI_MODES)},
        "epsilon": {"type": "number"},
        "reason": {"type": "string"},
    },
}
_STANDING_BODY = {
    "type": "object",
    "required": ["peer", "dataset", "operations", "purpose"],
    "properties": {
        "peer": {"type": "string"},
        "dataset": {"type": "string"},
        "operations": {"type": "array", "items": {"type": "string", "enum": ["psi", "stats", "fl"]}},
        "columns": {"type": "array", "items": {"type": "string"}},
        "purpose": {"type": "string"},
        "days": {"type": "integer", "default": 365},
        "k": {"type": "integer", "default": DEFAULT_K},
        "quota": {"type": "integer"},
        "psi_modes": {"type": "array", "items": {"type": "string"}},
        "epsilon": {"type": "number"},
        "reason": {"type": "string"},
    },
}


@api_route(bp, "/api/v1/whoami", "GET", roles=ALL_ROLES, summary="Show the caller's token")
def whoami() -> dict[str, Any]:
    """The token's id, name and role."""
    info = g.token
    return {"id": info.id, "name": info.name, "role": info.role, "node": services().name}


@api_route(bp, "/api/v1/datasets", "GET", roles=ALL_ROLES, summary="List datasets",
           query=[Param("all", "boolean", "include retired datasets")])
def list_datasets() -> list[dict[str, Any]]:
    """Datasets of this node's catalog (metadata and quality profile)."""
    return services().catalog.list_datasets(include_retired=query_flag("all"))


@api_route(bp, "/api/v1/datasets", "POST", roles=PROVIDER, summary="Register a dataset",
           body=_DATASET_BODY, ok=201)
def register_dataset() -> dict[str, Any]:
    """Register a CSV/Parquet file or SQL table already on the node's host."""
    body = json_body()
    source = open_source(file=field_of(body, "file", "string"),
                         sql=field_of(body, "sql", "string"),
                         table=field_of(body, "table", "string"))
    return services().catalog.register_dataset(
        code=field_of(body, "code", "string", required=True),
        name=field_of(body, "name", "string", required=True),
        source=source,
        key=field_of(body, "key", "string", required=True),
        level=field_of(body, "level", "string", required=True),
        share=field_of(body, "share", "string", required=True),
        meta=field_of(body, "meta", "object", default={}),
        replace=field_of(body, "replace", "boolean", default=False),
        reason=field_of(body, "reason", "string", default=""),
        user=acting_user(),
    )


@api_route(bp, "/api/v1/datasets/<code>", "GET", roles=ALL_ROLES, summary="Show a dataset")
def show_dataset(code: str) -> dict[str, Any]:
    """One dataset with its metadata, columns and quality profile."""
    return services().catalog.get_dataset(code)


@api_route(bp, "/api/v1/datasets/<code>/retire", "POST", roles=PROVIDER,
           summary="Retire a dataset", body=_REASON_BODY)
def retire_dataset(code: str) -> dict[str, Any]:
    """Withdraw a dataset; calls against it are refused from then on."""
    body = optional_body()
    return services().catalog.retire_dataset(
        code, user=acting_user(), reason=field_of(body, "reason", "string", default=""))


@api_route(bp, "/api/v1/applications", "GET", roles=READERS,
           summary="List applications filed with this node",
           query=[Param("status", "string", "pending, approved or refused"),
                  Param("peer", "string", "only from this partner node")])
def list_applications() -> list[dict[str, Any]]:
    """Applications received from partner nodes."""
    from flask import request

    return services().catalog.list_applications(status=request.args.get("status") or None,
                                                peer=request.args.get("peer") or None)


@api_route(bp, "/api/v1/applications/<app_id>", "GET", roles=READERS,
           summary="Show an application")
def show_application(app_id: str) -> dict[str, Any]:
    """One application received from a partner node."""
    return services().catalog.get_application(app_id)


@api_route(bp, "/api/v1/applications/<app_id>/approve", "POST", roles=PROVIDER,
           summary="Approve an application (creates a grant)", body=_APPROVE_BODY, ok=201)
def approve_application(app_id: str) -> dict[str, Any]:
    """Approve a pending application; the new grant is returned."""
    body = optional_body()
    modes = field_of(body, "psi_modes", "array")
    grant = services().catalog.approve_application(
        app_id,
        user=acting_user(),
        k=field_of(body, "k", "integer", default=DEFAULT_K),
        quota=field_of(body, "quota", "integer", default=DEFAULT_QUOTA),
        psi_modes=parse_list(modes, "psi_modes") if modes is not None else DEFAULT_PSI_MODES,
        epsilon=field_of(body, "epsilon", "number"),
        reason=field_of(body, "reason", "string", default=""),
    )
    return grant.to_dict()


@api_route(bp, "/api/v1/applications/<app_id>/refuse", "POST", roles=PROVIDER,
           summary="Refuse an application", body={**_REASON_BODY, "required": ["reason"]})
def refuse_application(app_id: str) -> dict[str, Any]:
    """Refuse a pending application with a reason."""
    body = json_body()
    return services().catalog.refuse_application(
        app_id, user=acting_user(), reason=field_of(body, "reason", "string", required=True))


@api_route(bp, "/api/v1/grants", "GET", roles=READERS, summary="List grants issued by this node",
           query=[Param("peer", "string"), Param("dataset", "string"),
                  Param("active", "boolean", "only grants usable now")])
def list_grants() -> list[dict[str, Any]]:
    """Grants, newest first."""
    from flask import request

    grants = services().catalog.list_grants(peer=request.args.get("peer") or None,
                                            dataset=request.args.get("dataset") or None,
                                            active_only=query_flag("active"))
    return [gr.to_dict() for gr in grants]


@api_route(bp, "/api/v1/grants", "POST", roles=PROVIDER,
           summary="Create a standing grant on an unconditional dataset", body=_STANDING_BODY,
           ok=201)
def create_standing_grant() -> dict[str, Any]:
    """A standing grant for a named partner, without an application."""
    body = json_body()
    modes = field_of(body, "psi_modes", "array")
    cols = field_of(body, "columns", "array")
    grant = services().catalog.create_standing_grant(
        peer=field_of(body, "peer", "string", required=True),
        dataset=field_of(body, "dataset", "string", required=True),
        operations=parse_list(field_of(body, "operations", "array", required=True), "operations"),
        purpose=field_of(body, "purpose", "string", required=True),
        columns=parse_list(cols, "columns") if cols is not None else None,
        days=field_of(body, "days", "integer", default=365),
        k=field_of(body, "k", "integer", default=DEFAULT_K),
        quota=field_of(body, "quota", "integer"),
        psi_modes=parse_list(modes, "psi_modes") if modes is not None else DEFAULT_PSI_MODES,
        epsilon=field_of(body, "epsilon", "number"),
        reason=field_of(body, "reason", "string", default=""),
        user=acting_user(),
    )
    return grant.to_dict()


@api_route(bp, "/api/v1/grants/<grant_id>", "GET", roles=READERS, summary="Show a grant")
def show_grant(grant_id: str) -> dict[str, Any]:
    """One grant with its status and remaining quota."""
    return services().catalog.get_grant(grant_id).to_dict()


@api_route(bp, "/api/v1/grants/<grant_id>/revoke", "POST", roles=PROVIDER,
           summary="Revoke a grant", body=_REASON_BODY)
def revoke_grant(grant_id: str) -> dict[str, Any]:
    """Revoke a grant now."""
    body = optional_body()
    return services().catalog.revoke_grant(
        grant_id, user=acting_user(), reason=field_of(body, "reason", "string", default="")
    ).to_dict()
