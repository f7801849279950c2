"""Line-based input files: cutting them into shards of whole lines, and reading
the lines of one shard. Memory stays constant whatever the file's size."""

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Tuple

CHUNK_BYTES = 1 << 20
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class LineRange:
    """Lines ``first_line`` to ``first_line + n_lines - 1`` (1-based), stored in
    bytes ``start`` to ``stop`` of the file."""

    start: int
    stop: int
    first_line: int
    n_lines: int


def line_ranges(path: Path, lines_per_range: int) -> List[LineRange]:
    """Cut ``path`` into ranges of ``lines_per_range`` lines (the last may be
    shorter). A last line without a newline counts; an empty file has none."""
    ranges: List[LineRange] = []
    start, first_line, counted, offset = 0, 1, 0, 0
    ends_with_newline = True
    with path.open("rb") as file:
        while True:
            chunk = file.read(CHUNK_BYTES)
            if not chunk:
                break
            pos = 0
            while True:
                needed = lines_per_range - counted
                available = chunk.count(b"\n", pos)
                if available < needed:
                    counted += available
                    break
                for _ in range(needed):
                    pos = chunk.index(b"\n", pos) + 1
                ranges.append(LineRange(start, offset + pos, first_line, lines_per_range))
                start, first_line, counted = offset + pos, first_line + lines_per_range, 0
            offset += len(chunk)
            ends_with_newline = chunk.endswith(b"\n")
    if offset > start:
        ranges.append(LineRange(start, offset, first_line, counted + (0 if ends_with_newline else 1)))
    return ranges


def read_lines(path: Path, start: int, stop: int, first_line: int) -> Iterator[Tuple[int, bytes]]:
    """(line number, bytes without the line end) for the lines in bytes
    ``start`` to ``stop``; a UTF-8 byte order mark on line 1 is dropped."""
    number = first_line
    with path.open("rb") as file:
        file.seek(start)
        offset = start
        while offset < stop:
            raw = file.readline()
            if not raw:
                raise ValueError(f"{path}: file is shorter than when it was read first (changed while annotating?)")
            offset += len(raw)
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
            if number == 1 and raw.startswith(BOM):
                raw = raw[len(BOM) :]
            yield number, raw
            number += 1
