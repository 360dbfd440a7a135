"""``python -m tmescope`` runs the CLI."""

from tmescope.cli.main import main

main()
