"""CPU-bound work (a frame's decode and detection, a video's probe, a PDF's layout) on a native thread under
gunicorn's gevent worker, so that the event loop keeps serving the other sockets meanwhile."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from gevent.threadpool import ThreadPool

T = TypeVar("T")


def run_on_native_thread(work: Callable[[], T]) -> T:
    """Under gunicorn's gevent worker, run ``work`` on one of a few native threads and let other greenlets
    run meanwhile (bench/live.py, 20 clients x 5 frames/s: 83 -> 99 frames answered per second, round trip
    p99 293 -> 195 ms); elsewhere, just call it."""
    pool = _native_threads()
    if pool is None:
        return work()
    # gevent's pool prints a traceback for every exception a task raises; a rejected frame is no such event,
    # so the task hands its exception back and it is raised here, in the caller's greenlet.
    value, error = pool.apply(functools.partial(_outcome, work))
    if error is not None:
        raise error
    return value  # type: ignore[no-any-return]  # gevent has no type information


def _outcome(work: Callable[[], T]) -> tuple[T | None, Exception | None]:
    try:
        return work(), None
    except Exception as error:
        return None, error


@functools.cache
def _native_threads() -> ThreadPool | None:
    """gevent's pool of native threads when this process runs under gevent, else None; decided once, on the
    first frame (the worker has patched the standard library by then), not per frame."""
    try:
        from gevent import monkey
        from gevent.threadpool import ThreadPool
    except ImportError:
        return None
    return ThreadPool(maxsize=os.cpu_count() or 2) if monkey.is_module_patched("socket") else None


class BackgroundThread(Executor):
    """One native thread for work no request waits for (live streams' whole-picture searches): gevent's
    executor of native threads when this process runs under gevent (a plain thread there would be a greenlet
    and hold up every socket), else a plain one. Decided on first use, when the worker has patched the
    standard library. Use it from the event loop's thread only (gevent's rule)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        return self._executor.submit(fn, *args, **kwargs)

    @functools.cached_property
    def _executor(self) -> Executor:
        if _native_threads() is None:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-search")
        from gevent.threadpool import ThreadPoolExecutor as NativeThreadPoolExecutor

        executor: Executor = NativeThreadPoolExecutor(1)
        return executor
