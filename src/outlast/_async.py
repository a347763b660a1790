"""Waiting from async code, on whichever event loop the caller runs (asyncio or trio).

outlast's own work runs on private threads (the resolver's loop thread, the fleet's
reader); async callers wait for it here without blocking their event loop and without
touching the application's default executor, under asyncio and trio alike (the async
faces run on anyio, as httpx's do). Cancelling the waiter never cancels the shared
work: other callers may be waiting for the same future.

Imports nothing from outlast.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.to_thread
import sniffio

__all__ = ["on_event_loop", "run_in_thread", "wait_future"]

T = TypeVar("T")


def on_event_loop() -> bool:
    """True when called on a thread that is running an asyncio or trio event loop."""
    try:
        sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        return False
    return True


def _call_soon_threadsafe() -> Callable[[Callable[[], None]], None]:
    """How another thread hands a callback to the running event loop."""
    if sniffio.current_async_library() == "trio":
        import trio  # type: ignore[import-untyped,unused-ignore]  # running: imported already

        token = trio.lowlevel.current_trio_token()

        def on_trio(callback: Callable[[], None]) -> None:
            token.run_sync_soon(callback)

        return on_trio
    loop = asyncio.get_running_loop()

    def on_asyncio(callback: Callable[[], None]) -> None:
        loop.call_soon_threadsafe(callback)

    return on_asyncio


async def wait_future(future: concurrent.futures.Future[T], limit: float) -> T:
    """The result of ``future`` (set on another thread), waited for at most ``limit`` s.

    Raises ``TimeoutError`` when ``limit`` runs out, ``concurrent.futures.CancelledError``
    when ``future`` was cancelled, and whatever ``future`` raised. Cancelling the caller
    leaves ``future`` running.
    """
    if not future.done():
        done = anyio.Event()
        call_soon = _call_soon_threadsafe()

        def wake(_: concurrent.futures.Future[T]) -> None:
            with contextlib.suppress(RuntimeError):  # the caller's loop closed: nobody waits
                call_soon(done.set)

        future.add_done_callback(wake)
        with anyio.move_on_after(limit):
            await done.wait()
        if not future.done():
            raise TimeoutError(f"no result within {limit:g}s")
    return future.result()


async def run_in_thread(function: Callable[[], T]) -> T:
    """``function()`` on anyio's worker threads (never the event loop's default executor).

    Cancelling the caller abandons the wait, not the call: ``function`` runs to its end.
    """
    return await anyio.to_thread.run_sync(function, abandon_on_cancel=True)
