"""``python -m outlast`` runs the ``outlast`` command."""

from outlast.cli import main

main()
