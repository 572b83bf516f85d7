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
