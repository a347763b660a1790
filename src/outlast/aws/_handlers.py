"""What a fallback region's client carries over from its primary: the user's event handlers.

botocore gives every client a copy of its session's event emitter, then registers the
client's own handlers on that copy (endpoint rules, retries, S3 redirects, all bound
to that client and its region). A user's handlers sit on the same emitter: those
registered on the session before the client was made, and those registered on
``client.meta.events`` afterwards (``before-sign`` to add a header, ``before-call``
for tracing). :func:`carry_handlers` copies exactly the latter kind, every handler
not defined by botocore, boto3, s3transfer, aiobotocore or outlast, onto a
fallback's client, in the same section (first, middle, last) and with the same
``unique_id``; botocore's own handlers stay the fallback's, built for its region.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Final

__all__ = ["carry_handlers", "user_handlers"]

_LIBRARIES: Final = ("botocore", "boto3", "s3transfer", "aiobotocore", "aioboto3", "outlast")
_SECTIONS: Final = ("first", "middle", "last")


def _module(handler: Any) -> str:
    module = getattr(handler, "__module__", None)
    if not isinstance(module, str):
        module = type(handler).__module__
    return module


def _ours(handler: Any) -> bool:
    module = _module(handler)
    return any(module == name or module.startswith(name + ".") for name in _LIBRARIES)


def _emitter(events: Any) -> Any:
    """The ``HierarchicalEmitter`` under a client's events (botocore wraps it in an aliaser)."""
    return getattr(events, "_emitter", events)


def user_handlers(events: Any) -> Iterator[tuple[str, str, Any, str | None]]:
    """``(event, section, handler, unique_id)`` for each handler a user registered."""
    emitter = _emitter(events)
    trie = getattr(getattr(emitter, "_handlers", None), "_root", None)
    if not isinstance(trie, dict):
        return
    unique_ids: dict[int, str] = {}
    for unique_id, item in getattr(emitter, "_unique_id_handlers", {}).items():
        if isinstance(item, dict) and "handler" in item and "count" not in item:
            unique_ids[id(item["handler"])] = unique_id
    pending: list[tuple[str, dict[str, Any]]] = [("", trie)]
    while pending:
        prefix, node = pending.pop()
        values = node.get("values")
        if values is not None:
            for section, handlers in zip(_SECTIONS, values, strict=True):
                for handler in handlers:
                    if not _ours(handler):
                        yield prefix, section, handler, unique_ids.get(id(handler))
        for chunk, child in node.get("children", {}).items():
            pending.append((f"{prefix}.{chunk}" if prefix else chunk, child))


def carry_handlers(source: Any, target: Any) -> int:
    """Register ``source``'s user handlers on ``target``'s events; the number carried."""
    events = target.meta.events
    register = {
        "first": events.register_first,
        "middle": events.register,
        "last": events.register_last,
    }
    present = {id(handler) for _, _, handler, _ in user_handlers(events)}
    carried = 0
    for event, section, handler, unique_id in list(user_handlers(source.meta.events)):
        if id(handler) in present:
            continue  # registered on every client (a library's, e.g. moto's stubber)
        register[section](event, handler, unique_id=unique_id)
        carried += 1
    return carried
