"""``python -m node.cli`` runs the CLI."""

from node.cli.main import main

if __name__ == "__main__":  # spawn-started pool workers import this module as __mp_main__
    main()
