"""``python -m node.cli`` runs the CLI."""

from node.cli.main import main

main()
