"""Top-level ``pcnode`` group and the single place expected errors become one stderr line."""

from __future__ import annotations

import logging
import os
import sys

import click

from pcnode import __version__
from pcnode.errors import PcnodeError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="pcnode")
@click.option("-v", "--verbose", count=True, help="more log output (-vv for debug)")
def cli(verbose: int) -> None:
    """pcnode: a privacy-computing data-operation node (数据可用不可见)."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _register_commands() -> None:
    """Import the command modules; each adds its commands to ``cli``."""
    from node.cli import (  # noqa: F401 - imported for their side effect
        catalog_cmds,
        fl_cmds,
        identity_cmds,
        job_cmds,
        ledger_cmds,
        serve_cmds,
    )


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the CLI; expected errors are one line, exit 1."""
    _register_commands()
    try:
        cli.main(args=argv, prog_name="pcnode", standalone_mode=False)
    except PcnodeError as exc:
        as_json = "--json" in (argv if argv is not None else sys.argv)
        if as_json:
            import json

            click.echo(json.dumps(exc.to_dict(), ensure_ascii=False), err=True)
        else:
            click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        os._exit(0)
    finally:
        from node.services import close_all

        close_all()
