"""Stopping a run at a person's Ctrl-C without paying for work nobody will wait for.

A terminal's Ctrl-C reaches the main process only: worker processes are started with
SIGINT ignored (``sigint_ignored`` around their start; an ignored signal stays ignored
across ``exec``, and Python then installs no handler of its own), so a half-imported
worker never prints a ``KeyboardInterrupt`` traceback. The main process answers Ctrl-C
by setting the run's *stop event*, which every arm sees, in a thread or in a worker
process: the graph checks it before each stage, and a stage waiting on model calls or
a person cancels them within ``POLL_SECONDS``. A generation that finished before is
safe on disk; one cut short is redone by ``ouro resume``.

A worker process also ends with the process that started it (``worker_init``): after a
``kill -9`` of ``ouro run`` or ``ouro sweep`` nothing is left computing, or paying for
calls, for a run nobody is watching.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Any, Awaitable, Iterator, TypeVar

T = TypeVar("T")

POLL_SECONDS = 0.1
_event: Any = None  # a threading.Event or a multiprocessing Event, shared with the arms


class RunInterrupted(Exception):
    """The run was asked to stop (Ctrl-C); raised where an arm notices it."""


def install(event: Any) -> None:
    """Make ``event`` this process's stop event (``None``: nothing can ask to stop)."""
    global _event
    _event = event


def requested() -> bool:
    return _event is not None and _event.is_set()


def check() -> None:
    if requested():
        raise RunInterrupted("the run was asked to stop")


async def cancellable(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable``; cancel it and raise ``RunInterrupted`` when a stop is asked.

    Cancelling waits for the cancelled calls to unwind, so no coroutine is left on the
    event loop to complain when it closes.
    """
    if _event is None:
        return await awaitable
    task = asyncio.ensure_future(awaitable)
    while True:
        done, _ = await asyncio.wait({task}, timeout=POLL_SECONDS)
        if done:
            return task.result()
        if requested():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            raise RunInterrupted("the run was asked to stop")


@contextlib.contextmanager
def sigint_ignored() -> Iterator[None]:
    """SIGINT ignored in this process for the block (processes started in it keep it
    ignored). Outside the main thread signals cannot be set, and nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def worker_init(stop: Any, parent_pid: int) -> None:
    """A pool's initializer: the run's stop event, and a life no longer than the parent's."""
    install(stop)
    die_with_parent(parent_pid)


def die_with_parent(parent_pid: int) -> None:
    """End this process when ``parent_pid``, its parent, ends: the kernel sends SIGKILL on
    Linux; elsewhere a thread looks every second."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0:
            if os.getppid() != parent_pid:  # the parent ended before the request took hold
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="ouro-parent-watch", daemon=True).start()
