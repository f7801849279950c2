"""What a run tells its user: progress while it runs (a bar with docs/s and an
ETA on a terminal, a log line every so often otherwise), and the summary printed
(and saved as _summary.json) at the end of a job."""

import itertools
import sys
import time
from array import array
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, TextIO

from ..safe_text import printable
from .output_folder import Commit
from .records import RecordId

MAX_CHECKED_IDS = 20_000_000  # 160 MB of hashes, twice that while sorting
MAX_SUSPECTS = 1_000_000
EXAMPLES = 5


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
    """Counts over the whole job (every run of it), checked against its files;
    speed over this run."""

    output: str
    docs_in: int
    annotated: int
    rejected: int
    entities: Dict[str, int] = field(default_factory=dict)
    docs_this_run: int = 0
    wall_s: float = 0.0
    engine: str = "local"
    duplicate_ids: int = 0
    duplicate_id_examples: List[RecordId] = field(default_factory=list)
    ids_not_checked: int = 0

    @property
    def docs_per_s(self) -> float:
        return self.docs_this_run / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> Dict[str, Any]:
        return {**asdict(self), "docs_per_s": round(self.docs_per_s, 2), "wall_s": round(self.wall_s, 3)}

    def format(self) -> str:
        """The summary for a terminal: every label, id and path escaped (``printable``)."""
        entities = ", ".join(f"{label} {count:,}" for label, count in sorted(self.entities.items())) or "none"
        resumed = "" if self.docs_this_run == self.docs_in else f" ({self.docs_this_run:,} docs in this run)"
        lines = [
            f"annotated {self.output}",
            f"  docs in:   {self.docs_in:,}",
            f"  annotated: {self.annotated:,}",
            f"  rejected:  {self.rejected:,}" + (" (see _rejects.jsonl)" if self.rejected else ""),
            f"  entities:  {sum(self.entities.values()):,} ({entities})",
            f"  ids:       {self._ids()}",
            f"  speed:     {self.docs_per_s:,.1f} docs/s, wall time {self.wall_s:.1f} s{resumed}",
        ]
        return "\n".join(printable(line) for line in lines)

    def _ids(self) -> str:
        if self.duplicate_ids:
            examples = ", ".join(map(repr, self.duplicate_id_examples))
            found = f"{self.duplicate_ids:,} records repeat an earlier id" + (f" (e.g. {examples})" if examples else "")
        else:
            found = "all distinct"
        if self.ids_not_checked:
            found += f" (only the first {self.annotated - self.ids_not_checked:,} ids checked)"
        return found


class DuplicateIds:
    """Counts the output records whose id an earlier record has, in bounded
    memory: the ``hash()`` of the first ``MAX_CHECKED_IDS`` ids (8 bytes each;
    later ids are not checked, and the summary says so), then, if some hashes
    repeat, a second pass over the ids that counts exactly among those whose hash
    repeats (at most ``MAX_SUSPECTS`` of them; beyond, the count is the hashes'
    and no id is named)."""

    def __init__(self) -> None:
        self._hashes = array("q")
        self.limit = MAX_CHECKED_IDS
        self.not_checked = 0
        self.count = 0
        self.examples: List[RecordId] = []

    def add(self, record_id: RecordId) -> None:
        if len(self._hashes) < self.limit:
            self._hashes.append(hash(record_id))
        else:
            self.not_checked += 1

    def count_exactly(self, ids: Iterable[RecordId]) -> None:
        """Count, given the same ids again in the same order."""
        import numpy

        hashes = numpy.sort(numpy.frombuffer(self._hashes, dtype=numpy.int64))
        repeated = hashes[1:][hashes[1:] == hashes[:-1]]
        if not len(repeated):
            return
        suspects = set(numpy.unique(repeated).tolist())
        if len(suspects) > MAX_SUSPECTS:
            self.count = len(repeated)
            return
        seen: Counter = Counter()
        for record_id in itertools.islice(ids, len(self._hashes)):
            if hash(record_id) in suspects:
                seen[record_id] += 1
        self.count = sum(times - 1 for times in seen.values())
        self.examples = [record_id for record_id, times in seen.items() if times > 1][:EXAMPLES]


def summarize(
    output: str, commits: Iterable[Commit], duplicates: DuplicateIds, docs_this_run: int, wall_s: float, engine: str
) -> Summary:
    """Add up the commits of a job (checked against the files by
    ``OutputFolder.check_files``, which fed ``duplicates``)."""
    annotated = rejected = 0
    entities: Dict[str, int] = {}
    for commit in commits:
        annotated += commit.annotated
        rejected += commit.rejected
        for label, count in commit.entities.items():
            entities[label] = entities.get(label, 0) + count
    return Summary(
        output,
        annotated + rejected,
        annotated,
        rejected,
        dict(sorted(entities.items())),
        docs_this_run,
        wall_s,
        engine,
        duplicates.count,
        duplicates.examples,
        duplicates.not_checked,
    )
