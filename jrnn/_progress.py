"""A tiny, dependency-free progress display for the ``jrnn`` command, on stderr.

Drawn only when enabled and stderr is a terminal, and only once a step has lasted
``delay`` seconds (quick work prints nothing). A background thread redraws the line
every ``interval`` seconds, so a single long step (an XLA compile, a TensorFlow import)
still shows its elapsed time.

Example:
    >>> import io
    >>> with Progress(3, "work", stream=io.StringIO()) as bar:
    ...     for name in ("load", "run", "save"):
    ...         bar.step(name)
    >>> bar.done
    3
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


class Progress:
    """``[#####.....] 2/4 label 3.1s`` on one stderr line; a context manager.

    Args:
        total: the number of steps (``None`` for an open-ended spinner).
        label: the text shown before the first :meth:`step`.
        enabled: ``False`` silences it (``--quiet``, ``--json``); ``None`` means "when
            ``stream`` is a TTY".
        stream: where to draw (stderr by default).
        delay: seconds of work before anything is drawn.
        interval: seconds between redraws.
    """

    width = 24

    def __init__(
        self,
        total: int | None,
        label: str = "",
        *,
        enabled: bool | None = None,
        stream: TextIO | None = None,
        delay: float = 1.0,
        interval: float = 0.2,
    ):
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", lambda: False)
        self.enabled = bool(isatty()) if enabled is None else (enabled and bool(isatty()))
        self.total, self.label, self.done = total, label, 0
        self.delay, self.interval = delay, interval
        self._start = time.perf_counter()
        self._shown = False
        self._started_step = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, label: str) -> None:
        """Mark the previous step finished and start the one called ``label``."""
        with self._lock:
            if self._started_step:
                self.done += 1
            self.label, self._started_step = label, True
            self._draw()

    def close(self) -> None:
        """Finish the last step and erase the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._started_step:
                self.done += 1
                self._started_step = False
            if self._shown:
                self.stream.write("\r\033[K")
                self.stream.flush()
                self._shown = False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._draw()

    def _draw(self) -> None:
        elapsed = time.perf_counter() - self._start
        if not self.enabled or elapsed < self.delay:
            return
        if self.total:
            filled = int(self.width * min(self.done, self.total) / self.total)
            bar = f"[{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} "
        else:
            bar = "|/-\\"[int(elapsed / self.interval) % 4] + " "
        self.stream.write(f"\r\033[K{bar}{self.label} {elapsed:.1f}s")
        self.stream.flush()
        self._shown = True
