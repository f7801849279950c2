"""Shards: the runs of consecutive input records that are annotated, written and
recorded as done together, and the plan that cuts an input into them."""

from dataclasses import dataclass
from typing import Tuple

from .fields import Fields
from .formats import InputFormat


@dataclass(frozen=True)
class Shard:
    """Records ``first_position`` to ``first_position + size - 1`` of the input,
    all in ``file``: bytes ``start`` to ``stop`` of a line-based file, or row
    groups ``start`` to ``stop - 1`` of a Parquet file. ``first_number`` is the
    first record's line (from 1) or row (from 0)."""

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
    """The whole input cut into shards."""

    input_format: InputFormat
    files: Tuple[InputFile, ...]
    shards: Tuple[Shard, ...]
    fields: Fields

    @property
    def total(self) -> int:
        """The number of input records, bad ones included."""
        return sum(shard.size for shard in self.shards)
