"""``outlast drill``: replay cloud-control-plane incidents on loopback, with and without outlast.

Everything runs in this process on 127.0.0.0/8: two authoritative DNS servers
(:class:`outlast.testing.DNSServer`), an HTTP service on two addresses, and clients
that make a request every 50 ms. Modules: ``_service`` (the HTTP service),
``_clients`` (what users have without outlast, and outlast), ``_scenarios`` (the
incidents and their timelines), ``_report`` (table, JSON, plot).
"""

from __future__ import annotations

from outlast.cli._drill._scenarios import SCENARIOS, run_drill

__all__ = ["SCENARIOS", "run_drill"]
