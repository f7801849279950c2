"""The summary printed (and saved as _summary.json) at the end of a job."""

from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterable

from .manifest import Commit


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
