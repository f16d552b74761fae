"""``python -m kdbench`` runs the command line."""

from kdbench.cli import main

main()
