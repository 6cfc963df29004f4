"""A bounded queue served by one daemon thread: work that must never slow a request (shadow scoring, review
routing). Under overload it drops and counts instead of blocking the caller."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger("helploop.serving.background")


class BackgroundQueue:
    def __init__(
        self,
        name: str,
        handle: Callable[[Any], None],
        *,
        capacity: int,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.name = name
        self._handle = handle
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=capacity)
        self._on_drop = on_drop or (lambda: None)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.done = 0
        self.dropped = 0

    def put(self, item: Any) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1
            self._on_drop()
            log.warning("%s: queue full, dropped one item", self.name)

    def offer(self, item: Any) -> bool:
        """Queue work that may be skipped under load: only while the queue is under half full, so the work
        ``put`` must not lose always finds room. Returns whether it was queued."""
        if self.backlog >= self._queue.maxsize // 2:
            return False
        self.put(item)
        return True

    @property
    def backlog(self) -> int:
        """Items waiting (approximate, as queue sizes are)."""
        return self._queue.qsize()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                self._handle(item)
                self.done += 1
            except Exception:  # noqa: BLE001 - background work must never take serving down
                log.exception("%s failed on %r", self.name, item)
            finally:
                self._queue.task_done()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is handled (tests, shutdown)."""
        finished = threading.Event()

        def wait() -> None:
            self._queue.join()
            finished.set()

        threading.Thread(target=wait, daemon=True).start()
        return finished.wait(timeout)
