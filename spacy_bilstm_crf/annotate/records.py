"""Input records, rejected records and where each came from."""

from dataclasses import dataclass
from typing import Any, Dict, Literal, Tuple, Union

RecordId = Union[int, str]
IdType = Literal["int", "str"]
Unit = Literal["line", "row"]


@dataclass(frozen=True)
class Location:
    """A record's place in its input: a 1-based line of a JSONL or text file,
    or a 0-based row of a Parquet file."""

    file: str
    unit: Unit
    number: int

    def __str__(self) -> str:
        return f"{self.file}: {self.unit} {self.number}"


@dataclass(frozen=True)
class Record:
    """A document to annotate. ``position`` counts every input record, bad ones
    included, from 0 across all input files."""

    position: int
    location: Location
    id: RecordId
    text: str


@dataclass(frozen=True)
class Reject:
    """A record that cannot be annotated, and why."""

    position: int
    location: Location
    reason: str

    def to_json(self) -> Dict[str, Union[str, int]]:
        """The line written to the rejects file."""
        return {"file": self.location.file, self.location.unit: self.location.number, "reason": self.reason}


class RejectedRecordError(ValueError):
    """A bad record under ``--strict``; the message names the file and line."""

    def __init__(self, reject: Reject) -> None:
        super().__init__(f"{reject.location}: {reject.reason}")
        self.reject = reject

    def __reduce__(self) -> Tuple[Any, Tuple[Reject]]:
        return (RejectedRecordError, (self.reject,))
