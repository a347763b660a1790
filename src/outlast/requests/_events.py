"""The logger of ``outlast.requests``.

An adapter's address events (``http.address_failed``, ``http.address_ejected``, ...)
are the dialler's (:mod:`outlast._dial`), logged under this logger and handed to the
listeners given to the adapter.
"""

from __future__ import annotations

import logging
from typing import Final

__all__ = ["LOGGER"]

LOGGER: Final = logging.getLogger("outlast.requests")
