"""outlast.cli: the ``outlast`` command.

Owns argument parsing and presentation only; it uses the public API of the layers
below and imports nothing private from them. A user error prints one line and exits 2.
"""

from __future__ import annotations

from outlast.cli._main import cli, main

__all__ = ["cli", "main"]
