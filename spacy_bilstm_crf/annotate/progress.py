"""Progress of a run: a bar with docs/s and an ETA on a terminal, a log line
every so often otherwise."""

import sys
import time
from typing import Any, Callable, Optional, TextIO


class Progress:
    """Counts the docs a run has done out of ``total``."""

    def __init__(
        self,
        total: int,
        *,
        stream: TextIO = sys.stderr,
        bar: Optional[bool] = None,
        log_every: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.log_every = log_every
        self._clock = clock
        self._start = self._last_log = clock()
        self._bar: Any = None
        if bar if bar is not None else stream.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="docs", file=stream, dynamic_ncols=True, smoothing=0.1)

    def advance(self, docs: int) -> None:
        self.done += docs
        if self._bar is not None:
            self._bar.update(docs)
            return
        now = self._clock()
        if now - self._last_log >= self.log_every:
            self._last_log = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        """``annotate: 1,200/5,000 docs (24%), 850.0 docs/s, ETA 4 s``."""
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        eta = f", ETA {_duration((self.total - self.done) / rate)}" if rate > 0 and self.total else ""
        return f"annotate: {self.done:,}/{self.total:,} docs{share}, {rate:,.1f} docs/s{eta}"

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
