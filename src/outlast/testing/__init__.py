"""outlast.testing: public helpers for testing code that uses outlast.

- :class:`DNSServer`: an authoritative DNS server on loopback that misbehaves on
  demand (empty answers, NXDOMAIN, SERVFAIL, silence, delay, truncation).
- The testing mode of the policies: :func:`set_testing` removes backoff sleeps (and
  can cap attempts); :func:`force_open` and :func:`force_closed` pin a policy's
  breakers. Each also works as a context manager that undoes it on exit.
- A pytest plugin (:mod:`outlast.testing._plugin`, entry point ``outlast``) with the
  fixtures ``outlast_dns`` (a DNSServer wired into ``OUTLAST_DNS_PROVIDERS``),
  ``outlast_chaos`` (a :class:`Chaos` that sets ``OUTLAST_CHAOS``) and
  ``outlast_testing``. This module does not import pytest; the plugin does.

Users' tests need no monkeypatching. This module may import every layer; no layer
imports it.
"""

from outlast.policy import force_closed, force_open, is_testing, set_testing
from outlast.testing._chaos import Chaos
from outlast.testing._dnsserver import DNSServer

__all__ = ["Chaos", "DNSServer", "force_closed", "force_open", "is_testing", "set_testing"]
