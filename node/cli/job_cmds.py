"""Joint-job commands: ``pcnode selftest`` (PSI, stats and FL commands live beside it)."""

from __future__ import annotations

import click

from node.cli.main import cli
from node.cli.output import console, emit, home_argument, json_option
from node.cli.progress import job_progress
from node.jobs.initiate import initiate
from node.services import NodeServices


def parse_peers(value: str) -> list[str]:
    """Split a comma-separated peer list."""
    return [p.strip() for p in value.split(",") if p.strip()]


@cli.command()
@home_argument
@click.option("--peers", required=True, help="comma-separated peers to include, e.g. bank,operator")
@click.option("--length", default=1 << 16, show_default=True, type=int,
              help="vector length each party contributes (8 bytes per element)")
@json_option
def selftest(home: str, peers: str, length: int, as_json: bool) -> None:
    """Run a secure-sum self-test across this node and PEERS; all must agree on the transcript."""
    services = NodeServices(home)
    parties = {services.name: "member", **{p: "member" for p in parse_peers(peers)}}
    with job_progress(not as_json) as progress:
        outcome = initiate(services, "selftest", parties, {"length": length}, progress=progress)
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash, **outcome.summary}
    emit(data, as_json, lambda: console.print(
        f"selftest job {outcome.job_id}: {len(parties)} parties, secure sum check ok, "
        f"transcript {outcome.transcript_hash}"))


@cli.command()
@home_argument
@click.option("--peer", required=True, help="the data holder to intersect with")
@click.option("--dataset", required=True, help="our dataset code (its key column is used)")
@click.option("--peer-dataset", required=True, help="the holder's dataset code")
@click.option("--mode", type=click.Choice(["intersection", "cardinality", "both", "join"]),
              default="intersection", show_default=True, help="what the parties learn")
@click.option("--normalize", "normalization", default="strip,nfkc", show_default=True,
              help="key normalisation: strip,casefold,nfkc,resident_id or none")
@click.option("--out", type=click.Path(dir_okay=False), help="write the intersection (or count) CSV")
@json_option
def psi(home: str, peer: str, dataset: str, peer_dataset: str, mode: str, normalization: str,
        out: str | None, as_json: bool) -> None:
    """Private set intersection with PEER (ECDH on Curve25519)."""
    from node.jobs.kinds import Authorization
    from node.jobs.psi_job import new_salt

    services = NodeServices(home)
    services.catalog.open_dataset(dataset)  # fail early: unknown or stale dataset
    params = {"mode": mode, "dataset": dataset, "peer_dataset": peer_dataset,
              "salt": new_salt(), "normalization": normalization}
    with job_progress(not as_json) as progress:
        outcome = initiate(services, "psi", {services.name: "requester", peer: "holder"}, params,
                           auth=Authorization(dataset=dataset), progress=progress)
    result = outcome.result
    if out:
        write_psi_output(out, result)
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash,
            "intersection_size": result.size, "output": out, **outcome.summary}
    emit(data, as_json, lambda: console.print(
        f"PSI job {outcome.job_id} ({mode}): |X∩Y| = {result.size} of our {result.own_size} "
        f"keys and their {result.peer_size}" + (f"; written to {out}" if out else "")))


def write_psi_output(path: str, result: object) -> None:
    """Write the intersecting keys (one per line, with a header), or the count."""
    items = getattr(result, "intersection", None)
    if items is None:
        write_rows_csv(path, [{"intersection_size": getattr(result, "size", "")}])
    else:
        write_rows_csv(path, [{"key": i.decode() if isinstance(i, bytes) else i} for i in items],
                       header=["key"])


@cli.command()
@home_argument
@click.option("--peer", required=True, help="the data holder")
@click.option("--dataset", required=True, help="our dataset code (its key column is matched)")
@click.option("--peer-dataset", required=True, help="the holder's dataset code")
@click.option("--agg", required=True,
              help="aggregates: count,sum:COL,mean:COL,var:COL,std:COL,hist:COL:E1|E2|...")
@click.option("--group-by", default=None, help="column to group by")
@click.option("--group-side", type=click.Choice(["holder", "requester"]), default="holder",
              show_default=True, help="whose column --group-by names")
@click.option("--backend", type=click.Choice(["ckks", "paillier"]), default="ckks",
              show_default=True, help="ckks: fast, approximate; paillier: exact")
@click.option("--epsilon", type=float, default=None, help="differential privacy budget for this query")
@click.option("--clip", default=None, help="value bounds for DP, e.g. income=0:1000000,tax=0:50000")
@click.option("--decimals", type=int, default=2, show_default=True,
              help="declared precision: values are fixed-point at this many decimals and released rounded")
@click.option("--out", type=click.Path(dir_okay=False), help="write one CSV row per group")
@json_option
def stats(home: str, peer: str, dataset: str, peer_dataset: str, agg: str, group_by: str | None,
          group_side: str, backend: str, epsilon: float | None, clip: str | None, decimals: int,
          out: str | None, as_json: bool) -> None:
    """Joint statistics over the intersection with PEER: we learn only the aggregates."""
    from node.jobs.kinds import Authorization
    from protocols.stats import StatsQuery

    services = NodeServices(home)
    services.catalog.open_dataset(dataset)
    query = StatsQuery.parse(agg, group_by=group_by, group_side=group_side, decimals=decimals,
                             bounds=clip, epsilon=epsilon)
    params = {"dataset": dataset, "peer_dataset": peer_dataset, "backend": backend,
              "query": query.to_json()}
    with job_progress(not as_json) as progress:
        outcome = initiate(services, "stats", {services.name: "requester", peer: "holder"},
                           params, auth=Authorization(dataset=dataset), progress=progress)
    result = outcome.result
    rows = result.to_rows()
    if out:
        write_rows_csv(out, rows)
    data = {"job_id": outcome.job_id, "transcript_hash": outcome.transcript_hash,
            "backend": backend, "intersection_size": result.intersection_size,
            "suppressed": result.suppressed, "rows": rows, "output": out}

    def human() -> None:
        from node.cli.output import table

        cols = list(rows[0].keys()) if rows else ["group", "count"]
        table(f"{backend} stats over |X∩Y| = {result.intersection_size} (k = {result.k})",
              cols, [[r.get(c) for c in cols] for r in rows])
        if result.suppressed:
            console.print(f"suppressed (count < k): {', '.join(map(str, result.suppressed))}")

    emit(data, as_json, human)


def write_rows_csv(path: str, rows: list[dict], header: list[str] | None = None) -> None:
    """Write dict rows as CSV (header from the first row unless given), atomically."""
    import csv
    import io

    from node.files import atomic_write

    buf = io.StringIO()
    fields = header or (list(rows[0].keys()) if rows else [])
    if fields:
        writer = csv.DictWriter(buf, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())
