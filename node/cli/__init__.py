"""The ``pcnode`` command line. ``main`` is the console-script entry point."""

from node.cli.main import main

__all__ = ["main"]
