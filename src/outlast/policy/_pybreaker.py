"""pybreaker, imported without the optional storages outlast does not use.

At load time pybreaker imports ``redis`` (for its ``CircuitRedisStorage``) and
``tornado`` whenever they are installed; redis 5+ imports opentelemetry in turn. That
is about 240 ms of ``import outlast`` for code outlast never runs (its breakers keep
state in memory; ``outlast.fleet`` talks to Redis itself). So pybreaker is imported
here with those two modules hidden, unless something already imported them, and
``pybreaker.HAS_REDIS_SUPPORT`` is then False. A thread that imports redis at the very
moment ``outlast.policy`` is first imported would see an ImportError: import outlast
before starting threads, as with any library.
"""

from __future__ import annotations

import sys
import threading
import types
from typing import TYPE_CHECKING

__all__ = ["pybreaker"]

_HIDDEN = ("redis", "tornado")
_lock = threading.Lock()


def _load() -> types.ModuleType:
    with _lock:
        if "pybreaker" in sys.modules:
            return sys.modules["pybreaker"]
        hidden = [name for name in _HIDDEN if name not in sys.modules]
        for name in hidden:
            sys.modules[name] = None  # type: ignore[assignment]  # "import redis" fails fast
        try:
            import pybreaker as module
        finally:
            for name in hidden:
                if sys.modules.get(name, 0) is None:
                    del sys.modules[name]
        return module


if TYPE_CHECKING:
    import pybreaker
else:
    pybreaker = _load()
