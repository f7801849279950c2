"""What a run tells its user: progress while it runs (a bar with docs/s and an
ETA on a terminal, a log line every so often otherwise), and the summary printed
(and saved as _summary.json) at the end of a job."""

import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, Optional, TextIO

from .output_folder import Commit


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


@dataclass
class Summary:
    """Counts over the whole job (every run of it); speed over this run."""

    output: str
    docs_in: int
    annotated: int
    rejected: int
    entities: Dict[str, int] = field(default_factory=dict)
    docs_this_run: int = 0
    wall_s: float = 0.0
    engine: str = "local"

    @property
    def docs_per_s(self) -> float:
        return self.docs_this_run / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> Dict[str, Any]:
        return {**asdict(self), "docs_per_s": round(self.docs_per_s, 2), "wall_s": round(self.wall_s, 3)}

    def format(self) -> str:
        entities = ", ".join(f"{label} {count:,}" for label, count in sorted(self.entities.items())) or "none"
        resumed = "" if self.docs_this_run == self.docs_in else f" ({self.docs_this_run:,} docs in this run)"
        return "\n".join(
            [
                f"annotated {self.output}",
                f"  docs in:   {self.docs_in:,}",
                f"  annotated: {self.annotated:,}",
                f"  rejected:  {self.rejected:,}" + (" (see _rejects.jsonl)" if self.rejected else ""),
                f"  entities:  {sum(self.entities.values()):,} ({entities})",
                f"  speed:     {self.docs_per_s:,.1f} docs/s, wall time {self.wall_s:.1f} s{resumed}",
            ]
        )


def summarize(output: str, commits: Iterable[Commit], docs_this_run: int, wall_s: float, engine: str) -> Summary:
    """Add up the commits of a job."""
    annotated = rejected = 0
    entities: Dict[str, int] = {}
    for commit in commits:
        annotated += commit.annotated
        rejected += commit.rejected
        for label, count in commit.entities.items():
            entities[label] = entities.get(label, 0) + count
    return Summary(
        output, annotated + rejected, annotated, rejected, dict(sorted(entities.items())), docs_this_run, wall_s, engine
    )
