"""Plain text input: one document per line, its id the line number."""

from pathlib import Path
from typing import Iterator, Union

from .fields import Fields
from .lines import read_lines
from .records import Location, Record, Reject
from .shards import Shard


def read_text(shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """The records of a shard of a text file; a line that is not UTF-8 or is
    blank is a reject."""
    for offset, (number, raw) in enumerate(read_lines(Path(shard.file), shard.start, shard.stop, shard.first_number)):
        position, location = shard.first_position + offset, Location(shard.file, "line", number)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Reject(position, location, f"not UTF-8 (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})")
            continue
        if not text.strip():
            yield Reject(position, location, "empty line" if not text else "line is only whitespace")
        else:
            yield Record(position, location, number, text)
