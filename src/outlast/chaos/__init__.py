"""outlast.chaos: fault injection for rehearsing outages, configured by ``OUTLAST_CHAOS``.

Faults are injected at the layer where the real ones occur, so outlast's defences meet
them as real faults:

- DNS provider layer (``dns_empty``, ``dns_nxdomain``, ``dns_servfail``,
  ``dns_timeout``): :mod:`outlast.chaos._dns` wraps each provider of a resolver built by
  :meth:`outlast.Resolver.from_env`; a name with a last-known-good answer keeps it.
- Where an address is dialled (``connect_refused``, ``connect_timeout``):
  :mod:`outlast.chaos._http` stands in for httpcore's backend under an outlast
  transport's dialler; the address is reported and ejected, the request retried.
- Around each HTTP attempt, inside the policy (``http_503``, ``latency``).
- Under botocore (:mod:`outlast.chaos._urllib3`): the same connect and HTTP faults
  where a wrapped boto3 client's urllib3 connection dials and its pool sends; for an
  aiobotocore client (:mod:`outlast.chaos._aiobotocore`), around its aiohttp session's
  send.

Every component built with a plan emits :class:`ChaosArmed` once, and every injected
fault :class:`FaultInjected` (logger ``outlast.chaos``, both at WARNING). When
``OUTLAST_CHAOS`` is unset nothing here is imported by the layers and the hot paths
carry no extra work.

This package's ``__init__`` imports only the parser and the event (``outlast._config``
imports the parser); the injectors import the layers they plug into and are imported
by those layers lazily.
"""

from __future__ import annotations

from outlast._chaosplan import FAULTS, ChaosPlan, Rule, parse_chaos
from outlast.chaos._events import ChaosArmed, FaultInjected

__all__ = ["ChaosArmed", "ChaosPlan", "FAULTS", "FaultInjected", "Rule", "parse_chaos"]
