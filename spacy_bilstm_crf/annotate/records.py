"""What annotate works on: input records and rejects (and the checks that tell
them apart), and the shards and plan that cut an input into units of work."""

import re
from dataclasses import dataclass
from typing import Any, Dict, Literal, Optional, Tuple, Union

from .settings import InputFormat

RecordId = Union[int, str]
IdType = Literal["int", "str"]
Unit = Literal["line", "row"]

# Ids are 64-bit integers (Arrow's int64, as in Parquet output and the Ray engine) or strings.
SMALLEST_ID, LARGEST_ID = -(2**63), 2**63 - 1
SURROGATE = re.compile("[\ud800-\udfff]")


# --- records and rejects -------------------------------------------------------


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


# --- fields and their checks ------------------------------------------------------


@dataclass(frozen=True)
class Fields:
    """Where a record's text and id are, and the type all ids must have."""

    text: str = "text"
    id: str = "id"
    id_type: IdType = "int"


def id_type_of(value: Any) -> Optional[IdType]:
    """``"int"`` or ``"str"`` for a usable id, None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return "int"
    if isinstance(value, str):
        return "str"
    return None


def check_id(value: Any, field: str, expected: IdType) -> Optional[str]:
    """The reason an id is refused, or None. Ids are all integers or all strings
    (the type of the input's first good record), so that every output file has
    one id type."""
    found = id_type_of(value)
    if found is None:
        return f"id field {field!r} is {_describe(value)}, not a string or an integer"
    if found != expected:
        wanted = "an integer" if expected == "int" else "a string"
        return f"id field {field!r} is {_describe(value)}, but the input's ids are {wanted} (its first good record)"
    if found == "int" and not SMALLEST_ID <= value <= LARGEST_ID:
        return f"id field {field!r} is {_number(value)}, outside the 64-bit integers"
    if found == "str":
        return _check_unicode(value, f"id field {field!r}")
    return None


def check_text(value: Any, field: str) -> Optional[str]:
    """The reason a text is refused, or None: it must be a string with
    something besides whitespace."""
    if value is None:
        return f"text field {field!r} is null"
    if not isinstance(value, str):
        return f"text field {field!r} is {_describe(value)}, not a string"
    if not value.strip():
        return f"text field {field!r} is empty" if not value else f"text field {field!r} is only whitespace"
    return _check_unicode(value, f"text field {field!r}")


def _check_unicode(value: str, what: str) -> Optional[str]:
    """JSON can hold half of a UTF-16 pair (``"\\ud800"``), which no UTF-8
    output can: such a string is refused."""
    found = SURROGATE.search(value)
    if found is None:
        return None
    return f"{what} holds a lone surrogate ({found.group()!r} at character {found.start() + 1}), which is not text"


def _number(value: int) -> str:
    digits = str(value)
    return digits if len(digits) <= 40 else f"{digits[:20]}... ({len(digits.lstrip('-'))} digits)"


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"a number ({_number(value)})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({value[:20]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


# --- shards and the plan -----------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """Records ``first_position`` to ``first_position + size - 1`` of the input,
    all in ``file``: bytes ``start`` to ``stop`` of a line-based file, or row
    groups ``start`` to ``stop - 1`` of a Parquet file. ``first_number`` is the
    first record's line (from 1) or row (from 0). Shards are annotated, written
    and recorded as done together."""

    index: int
    file: str
    start: int
    stop: int
    first_number: int
    size: int
    first_position: int


@dataclass(frozen=True)
class InputFile:
    """An input file as it was when planned; a resumed job must find it unchanged."""

    path: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Plan:
    """The whole input cut into shards (made by ``inputs.make_plan``)."""

    input_format: InputFormat
    files: Tuple[InputFile, ...]
    shards: Tuple[Shard, ...]
    fields: Fields

    @property
    def total(self) -> int:
        """The number of input records, bad ones included."""
        return sum(shard.size for shard in self.shards)
