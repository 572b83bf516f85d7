"""Catalog commands: datasets, peer catalog, applications, grants, tokens.

Each command opens HOME's services directly (no running node is needed for
local changes); partner commands reach the peer over mTLS gRPC. Every change is
one transaction and is written to the node's ledger with the acting user.
"""

from __future__ import annotations

import json
from typing import Any

import click

from node.catalog.grants import DEFAULT_K, DEFAULT_PSI_MODES, DEFAULT_QUOTA, PSI_MODES, parse_list
from node.catalog.meta import LEVELS, SHARES, load_meta_file
from node.catalog.partner import file_application, refresh_outgoing
from node.catalog.sources import open_source
from node.catalog.tokens import ROLES
from node.cli.main import cli
from node.cli.output import console, emit, home_argument, json_option
from pcnode.errors import InvalidInput


def open_services(home: str) -> Any:
    """The node's services for ``home`` (tests replace this)."""
    from node.services import NodeServices

    return NodeServices(home)


def _csv(value: str | None, what: str) -> list[str]:
    return parse_list(value, what)


def table(title: str, columns: list[str], rows: list[Any]) -> None:
    """A rich table whose id/code columns never wrap (so they can be copied)."""
    from rich.table import Table

    t = Table(title=title)
    for c in columns:
        t.add_column(c, no_wrap=c in ("id", "code", "grant", "field", "measure", "column"))
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


# --- datasets --------------------------------------------------------------------------


@cli.group()
def dataset() -> None:
    """Register, list, show and retire datasets in this node's catalog."""


@dataset.command("register")
@home_argument
@click.option("--code", required=True, help="resource code (信息资源代码), unique in this catalog")
@click.option("--name", required=True, help="resource name (信息资源名称)")
@click.option("--file", "file", type=click.Path(dir_okay=False), help="CSV or Parquet file")
@click.option("--sql", help="SQLAlchemy URL of a SQLite or PostgreSQL database")
@click.option("--table", help="table name (with --sql)")
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]),
              help="file format (default: from the extension)")
@click.option("--key", required=True, help="key column used for joining")
@click.option("--level", required=True, help="sensitivity level: " + "|".join(LEVELS))
@click.option("--share", required=True, help="sharing attribute: " + "|".join(SHARES))
@click.option("--meta", "meta_file", type=click.Path(dir_okay=False),
              help="TOML file with the directory core metadata and column descriptions")
@click.option("--replace", is_flag=True, help="re-register an existing (e.g. stale) dataset")
@click.option("--reason", default="", help="reason recorded in the ledger")
@json_option
def dataset_register(home: str, code: str, name: str, file: str | None, sql: str | None,
                     table: str | None, fmt: str | None, key: str, level: str, share: str,
                     meta_file: str | None, replace: bool, reason: str, as_json: bool) -> None:
    """Register a dataset: metadata, schema, content digest and quality profile.

    The data stays where it is; the catalog keeps a reference to it.
    """
    meta = load_meta_file(meta_file) if meta_file else {}
    source = open_source(file=file, sql=sql, table=table, kind=fmt if file else None)
    svc = open_services(home)
    entry = svc.catalog.register_dataset(code=code, name=name, source=source, key=key,
                                         level=level, share=share, meta=meta, user=svc.user,
                                         reason=reason, replace=replace)

    def human() -> None:
        p = entry["profile"]
        verb = "re-registered" if replace else "registered"
        console.print(f"{verb} [bold]{entry['code']}[/] v{entry['version']}: {p['rows']} rows, "
                      f"{len(entry['columns'])} columns, key {entry['key_column']} "
                      f"({_pct(p['key']['unique_rate'])} unique), {entry['content_digest'][:19]}")

    emit(entry, as_json, human)


@dataset.command("list")
@home_argument
@click.option("--all", "include_retired", is_flag=True, help="include retired datasets")
@json_option
def dataset_list(home: str, include_retired: bool, as_json: bool) -> None:
    """List this node's datasets."""
    items = open_services(home).catalog.list_datasets(include_retired=include_retired)
    emit(items, as_json, lambda: table(
        "datasets", ["code", "name", "level", "share", "key", "rows", "state", "version"],
        [[d["code"], d["name"], d["level"], d["share"], d["key_column"], d["profile"]["rows"],
          d["state"], d["version"]] for d in items]))


@dataset.command("show")
@home_argument
@click.argument("code")
@click.option("--check", is_flag=True, help="also check the source for changes (staleness)")
@json_option
def dataset_show(home: str, code: str, check: bool, as_json: bool) -> None:
    """Show a dataset: core metadata, columns and quality profile."""
    catalog = open_services(home).catalog
    if check:
        catalog.check_stale(code)
    d = catalog.get_dataset(code)

    def human() -> None:
        m, p = d["meta"], d["profile"]
        rows = [
            ("code (信息资源代码)", d["code"]), ("name (名称)", d["name"]),
            ("classification (分类)", m.get("classification", "")),
            ("provider (提供方)", f"{m.get('provider', '')} {m.get('provider_code', '')}".strip()),
            ("summary (摘要)", m.get("summary", "")), ("format (格式)", m.get("format", "")),
            ("share (共享属性)", f"{d['share']} {SHARES[d['share']]}"
             + (f" - {m['share_condition']}" if m.get("share_condition") else "")),
            ("open (开放属性)", m.get("open", "")), ("update cycle (更新周期)", m.get("update_cycle", "")),
            ("publish date (发布日期)", m.get("publish_date", "")),
            ("related (关联资源代码)", ", ".join(m.get("related", []))),
            ("level (分级)", d["level"]), ("key column", d["key_column"]),
            ("source", f"{d['source']['kind']}: {d['source']['location']}"),
            ("content digest", d["content_digest"]), ("state", d["state"]),
            ("version", d["version"]),
            ("registered", f"{d['registered_at']} by {d['registered_by']}"),
        ]
        if d["retired_at"]:
            rows.append(("retired", f"{d['retired_at']} by {d['retired_by']}: {d['reason'] or ''}"))
        table(f"dataset {d['code']}", ["field", "value"], rows)
        k = p["key"]
        table("quality profile", ["measure", "value"], [
            ("rows", p["rows"]), ("columns", p["columns_count"]),
            ("key distinct", k["distinct"]), ("key unique rate", _pct(k["unique_rate"])),
            ("key duplicate rows", f"{k['duplicate_rows']} ({_pct(k['duplicate_rate'])})"),
            ("keys occurring more than once", k["duplicated_keys"]), ("null keys", k["nulls"]),
            ("missing cells", p["missing_cells"]),
        ])
        table("information items (信息项)", ["column", "type", "description", "nulls", "null rate",
                                         "type failures"],
              [[c["name"], c["type"], c["description"], p["columns"][c["name"]]["nulls"],
                _pct(p["columns"][c["name"]]["null_rate"]),
                p["columns"][c["name"]]["type_failures"]] for c in d["columns"]])

    emit(d, as_json, human)


@dataset.command("retire")
@home_argument
@click.argument("code")
@click.option("--reason", default="", help="reason recorded in the ledger")
@json_option
def dataset_retire(home: str, code: str, reason: str, as_json: bool) -> None:
    """Retire a dataset: it stays listed for audit and every call against it is refused."""
    svc = open_services(home)
    d = svc.catalog.retire_dataset(code, user=svc.user, reason=reason)
    emit(d, as_json, lambda: console.print(f"retired {d['code']}"))


# --- partner side: peer catalog and applications -----------------------------------------


@cli.command("catalog")
@home_argument
@click.option("--peer", required=True, help="the provider node to browse")
@json_option
def catalog_cmd(home: str, peer: str, as_json: bool) -> None:
    """List a peer's shareable datasets over mTLS gRPC (metadata only, never rows)."""
    svc = open_services(home)
    svc.config.peer(peer)
    items = svc.peer(peer).list_catalog()
    emit(items, as_json, lambda: table(
        f"catalog of {peer}",
        ["code", "name", "share", "level", "key", "rows", "columns", "your grants"],
        [[d.get("code"), d.get("name"), d.get("share"), d.get("level"), d.get("key_column"),
          d.get("rows"), ", ".join(c.get("name", "") for c in d.get("columns", [])),
          ", ".join(d.get("your_grants", []))] for d in items]))


@cli.command("apply")
@home_argument
@click.option("--peer", required=True, help="the provider node")
@click.option("--dataset", "dataset_code", required=True, help="the provider's dataset code")
@click.option("--ops", required=True, help="operations, comma-separated: psi,stats,fl")
@click.option("--columns", required=True, help="columns, comma-separated")
@click.option("--purpose", required=True, help="purpose of use (使用目的)")
@click.option("--days", required=True, type=click.IntRange(1, 3650), help="requested period")
@json_option
def apply_cmd(home: str, peer: str, dataset_code: str, ops: str, columns: str, purpose: str,
              days: int, as_json: bool) -> None:
    """File an application with a provider node."""
    svc = open_services(home)
    svc.config.peer(peer)
    body = {"dataset": dataset_code, "operations": _csv(ops, "--ops"),
            "columns": _csv(columns, "--columns"), "purpose": purpose, "days": days}
    app = file_application(svc.catalog, svc.peer(peer), peer, body, user=svc.user)
    emit(app, as_json, lambda: console.print(
        f"filed application [bold]{app['id']}[/] with {peer} for {app['dataset']} "
        f"({app['status']}); check it with: pcnode applications {home} --outgoing"))


@cli.command("applications")
@home_argument
@click.option("--outgoing", is_flag=True,
              help="applications this node filed with providers (refreshes pending ones)")
@click.option("--no-refresh", is_flag=True, help="with --outgoing: do not contact providers")
@click.option("--status", type=click.Choice(["pending", "approved", "refused"]))
@json_option
def applications_cmd(home: str, outgoing: bool, no_refresh: bool, status: str | None,
                     as_json: bool) -> None:
    """List applications filed with this node (or, with --outgoing, filed by it)."""
    svc = open_services(home)
    if outgoing:
        if no_refresh:
            items = svc.catalog.list_outgoing_applications()
        else:
            items = refresh_outgoing(svc.catalog, svc.peer, user=svc.user)
        if status:
            items = [a for a in items if a["status"] == status]
        emit(items, as_json, lambda: table(
            "applications filed by this node",
            ["id", "provider", "dataset", "ops", "columns", "status", "grant", "note"],
            [[a["id"], a["peer"], a["dataset"], ",".join(a["operations"]), ",".join(a["columns"]),
              a["status"], a.get("grant_id") or "", a.get("refresh_error") or a.get("reason") or ""]
             for a in items]))
        return
    items = svc.catalog.list_applications(status=status)
    emit(items, as_json, lambda: table(
        "applications filed with this node",
        ["id", "peer", "dataset", "ops", "columns", "purpose", "days", "status", "filed", "grant"],
        [[a["id"], a["peer"], a["dataset"], ",".join(a["operations"]), ",".join(a["columns"]),
          a["purpose"], a["days"], a["status"], a["filed_at"], a.get("grant_id") or ""]
         for a in items]))


def _modes(value: str | None) -> list[str]:
    return _csv(value, "--psi-modes") if value else list(DEFAULT_PSI_MODES)


def _show_grant(grant: Any, verb: str) -> None:
    d = grant.to_dict()
    console.print(
        f"{verb} grant [bold]{d['id']}[/]: {d['peer']} may {','.join(d['operations'])} on "
        f"{d['dataset']} columns {','.join(d['columns'])}; psi modes {','.join(d['psi_modes'])}; "
        f"k={d['k']}; quota {d['quota'] if d['quota'] is not None else 'unlimited'}; "
        f"until {d['expires_at']}")


@cli.command("approve")
@home_argument
@click.argument("app_id")
@click.option("--k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True,
              help="minimum group size of any released statistic")
@click.option("--quota", type=click.IntRange(min=1), default=DEFAULT_QUOTA, show_default=True,
              help="number of calls allowed")
@click.option("--psi-modes", help=f"allowed PSI output modes, comma-separated: {','.join(PSI_MODES)} "
              f"[default: {','.join(DEFAULT_PSI_MODES)}]")
@click.option("--epsilon", type=click.FloatRange(min=0, min_open=True),
              help="total differential-privacy budget (default: none)")
@click.option("--reason", default="", help="reason recorded in the ledger")
@json_option
def approve_cmd(home: str, app_id: str, k: int, quota: int, psi_modes: str | None,
                epsilon: float | None, reason: str, as_json: bool) -> None:
    """Approve an application: creates a grant for the applicant."""
    svc = open_services(home)
    grant = svc.catalog.approve_application(app_id, user=svc.user, k=k, quota=quota,
                                            psi_modes=_modes(psi_modes), epsilon=epsilon,
                                            reason=reason)
    emit(grant.to_dict(), as_json, lambda: _show_grant(grant, f"approved {app_id};"))


@cli.command("refuse")
@home_argument
@click.argument("app_id")
@click.option("--reason", required=True, help="why (told to the applicant, recorded in the ledger)")
@json_option
def refuse_cmd(home: str, app_id: str, reason: str, as_json: bool) -> None:
    """Refuse an application."""
    svc = open_services(home)
    app = svc.catalog.refuse_application(app_id, user=svc.user, reason=reason)
    emit(app, as_json, lambda: console.print(f"refused {app_id}: {reason}"))


@cli.command("grants")
@home_argument
@click.option("--peer", help="only grants to this peer")
@click.option("--dataset", "dataset_code", help="only grants on this dataset")
@click.option("--active", is_flag=True, help="only grants usable now")
@json_option
def grants_cmd(home: str, peer: str | None, dataset_code: str | None, active: bool,
               as_json: bool) -> None:
    """List grants issued by this node."""
    items = [g.to_dict() for g in open_services(home).catalog.list_grants(
        peer=peer, dataset=dataset_code, active_only=active)]
    emit(items, as_json, lambda: table(
        "grants", ["id", "peer", "dataset", "ops", "columns", "psi modes", "k", "used/quota",
                   "expires", "status"],
        [[g["id"], g["peer"], g["dataset"], ",".join(g["operations"]), ",".join(g["columns"]),
          ",".join(g["psi_modes"]), g["k"],
          f"{g['used']}/{g['quota'] if g['quota'] is not None else '∞'}", g["expires_at"],
          g["status"] + (" (standing)" if g["standing"] else "")] for g in items]))


@cli.command("grant")
@home_argument
@click.option("--standing", is_flag=True, required=True,
              help="required: create a standing grant (unconditional datasets only)")
@click.option("--peer", required=True, help="the partner node")
@click.option("--dataset", "dataset_code", required=True)
@click.option("--ops", required=True, help="operations, comma-separated: psi,stats,fl")
@click.option("--columns", help="columns, comma-separated (default: all)")
@click.option("--purpose", required=True, help="purpose of use (使用目的)")
@click.option("--days", type=click.IntRange(1, 3650), default=365, show_default=True)
@click.option("--k", type=click.IntRange(min=1), default=DEFAULT_K, show_default=True)
@click.option("--quota", type=click.IntRange(min=1), help="calls allowed (default: unlimited)")
@click.option("--psi-modes", help=f"comma-separated [default: {','.join(DEFAULT_PSI_MODES)}]")
@click.option("--epsilon", type=click.FloatRange(min=0, min_open=True))
@click.option("--reason", default="", help="reason recorded in the ledger")
@json_option
def grant_cmd(home: str, standing: bool, peer: str, dataset_code: str, ops: str,
              columns: str | None, purpose: str, days: int, k: int, quota: int | None,
              psi_modes: str | None, epsilon: float | None, reason: str, as_json: bool) -> None:
    """Give a partner a standing grant on an unconditional dataset, without an application."""
    if not standing:  # pragma: no cover - click enforces required=True
        raise InvalidInput("pass --standing")
    svc = open_services(home)
    grant = svc.catalog.create_standing_grant(
        peer=peer, dataset=dataset_code, operations=_csv(ops, "--ops"),
        columns=_csv(columns, "--columns") or None, purpose=purpose, days=days, k=k,
        quota=quota, psi_modes=_modes(psi_modes), epsilon=epsilon, reason=reason, user=svc.user)
    emit(grant.to_dict(), as_json, lambda: _show_grant(grant, "created standing"))


@cli.command("revoke")
@home_argument
@click.argument("grant_id")
@click.option("--reason", default="", help="reason recorded in the ledger")
@json_option
def revoke_cmd(home: str, grant_id: str, reason: str, as_json: bool) -> None:
    """Revoke a grant: every later call under it is refused (rule 'revoked')."""
    svc = open_services(home)
    grant = svc.catalog.revoke_grant(grant_id, user=svc.user, reason=reason)
    emit(grant.to_dict(), as_json, lambda: console.print(f"revoked {grant_id}"))


# --- HTTP API tokens -----------------------------------------------------------------------


@cli.group()
def token() -> None:
    """Bearer tokens for the HTTP API."""


@token.command("create")
@home_argument
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option("--name", default="", help="who holds it (recorded as the acting user)")
@json_option
def token_create(home: str, role: str, name: str, as_json: bool) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    svc = open_services(home)
    info, secret = svc.catalog.create_token(role, user=svc.user, name=name)
    data = {"id": info.id, "name": info.name, "role": info.role, "token": secret}
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        console.print(f"token {info.id} ({info.name}, role {info.role}); shown only now:")
        click.echo(secret)


@token.command("list")
@home_argument
@json_option
def token_list(home: str, as_json: bool) -> None:
    """List tokens (never their secrets)."""
    items = open_services(home).catalog.list_tokens()
    emit(items, as_json, lambda: table("tokens", ["id", "name", "role", "created", "revoked"],
                                       [[t["id"], t["name"], t["role"], t["created_at"],
                                         t["revoked_at"] or ""] for t in items]))


@token.command("revoke")
@home_argument
@click.argument("token_id")
@json_option
def token_revoke(home: str, token_id: str, as_json: bool) -> None:
    """Revoke a token."""
    svc = open_services(home)
    svc.catalog.revoke_token(token_id, user=svc.user)
    emit({"id": token_id, "revoked": True}, as_json,
         lambda: console.print(f"revoked token {token_id}"))
