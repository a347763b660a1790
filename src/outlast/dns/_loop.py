"""A private event loop on a daemon thread, where the resolver's lookups run.

Sync and async callers alike hand coroutines to it and get a
``concurrent.futures.Future`` back: a sync caller waits on it, an async caller awaits
it through ``asyncio.wrap_future``. One lookup therefore serves callers on any thread
and any event loop. The thread starts on first use and is started afresh in a child
process after ``os.fork()`` (a child inherits no threads).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; the future cannot be cancelled by a waiter.

        The task runs in an empty ``contextvars`` context, not a copy of the caller's:
        a caller's context variables (a request being sent, say) must not be kept alive
        by the loop, nor leak into a lookup that serves other callers.
        """
        try:
            loop = self._ensure()
        except RuntimeError:
            coro.close()
            raise
        return contextvars.Context().run(asyncio.run_coroutine_threadsafe, coro, loop)

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        return self._loop

    def in_loop_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def _ensure(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is not None:
            return loop
        with self._lock:
            if self._closed:
                raise RuntimeError("the resolver is closed")
            if self._loop is None:
                # Made in an empty context: the loop's own handles keep what they capture.
                loop = contextvars.Context().run(asyncio.new_event_loop)
                ready = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(loop, ready), name=self._name, daemon=True
                )
                thread.start()
                ready.wait()
                self._thread = thread
                self._loop = loop
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        try:
            loop.run_forever()
        finally:
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            self._closed = True
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            if thread is not threading.current_thread():
                thread.join(timeout)

    def after_fork_in_child(self) -> None:
        """The parent's thread does not exist here: forget it, start afresh on next use."""
        self._lock = threading.Lock()
        self._loop = None
        self._thread = None
