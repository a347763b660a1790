"""outlast.cli: the ``outlast`` command.

Owns argument parsing and presentation only. It uses the layers' public API, and the
dns layer's own name checks and provider builder so that ``doctor`` probes providers
exactly as the resolver does. A user error prints one line and exits 2.
"""

from __future__ import annotations

from outlast.cli._main import cli, main

__all__ = ["cli", "main"]
