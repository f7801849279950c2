"""Reading the input: cutting it into shards (``make_plan``) and reading the
records of one shard (``read_shard``), bad ones as rejects, for each input
format: JSONL (one object per line), plain text (one document per line, its id
the line number) and Parquet (a file or a folder of them). Line-based files are
read in constant memory whatever their size; Parquet files in small batches."""

import json
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from .records import (
    Fields,
    IdType,
    InputFile,
    Location,
    Plan,
    Record,
    RecordId,
    Reject,
    Shard,
    check_id,
    check_text,
    id_type_of,
)
from .settings import InputFormat, import_pyarrow

CHUNK_BYTES = 1 << 20
# A longer line is rejected without being read into memory: spaCy's longest
# text (nlp.max_length, a million characters) takes at most 12 MB as JSON.
MAX_LINE_BYTES = 1 << 26
BOM = b"\xef\xbb\xbf"
READ_BATCH_ROWS = 1024


# --- the plan ------------------------------------------------------------------------


def make_plan(path: Path, input_format: InputFormat, fields: Fields, shard_size: int) -> Plan:
    """The shards of ``path``: ``shard_size`` lines each for line-based files,
    whole row groups of at least ``shard_size`` rows for Parquet. Reads line-based
    files once, counting lines; reads only the metadata of Parquet files."""
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, got {shard_size}")
    path = path.resolve()
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    shards: List[Shard] = []
    if input_format == "parquet":
        files = parquet_files(path)
        id_types = {file: _naming_file(file, id_type_of_column, file, fields) for file in files}
        if len(set(id_types.values())) > 1:
            raise ValueError(f"{path}: id column {fields.id!r} is an integer in some files and a string in others")
        fields = replace(fields, id_type=id_types[files[0]])
        for file in files:
            for start, stop, first_row, rows in _naming_file(file, row_group_ranges, file, shard_size):
                shards.append(Shard(len(shards), str(file), start, stop, first_row, rows, _next_position(shards)))
    else:
        if path.is_dir():
            raise ValueError(f"{path}: is a folder; only Parquet input can be a folder")
        files = [path]
        id_type = first_id_type(path, fields) if input_format == "jsonl" else "int"
        fields = replace(fields, id_type=id_type)
        for lines in line_ranges(path, shard_size):
            shard = Shard(
                len(shards), str(path), lines.start, lines.stop, lines.first_line, lines.n_lines, _next_position(shards)
            )
            shards.append(shard)
    inputs = tuple(InputFile(str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in files)
    return Plan(input_format, inputs, tuple(shards), fields)


def _next_position(shards: List[Shard]) -> int:
    return shards[-1].first_position + shards[-1].size if shards else 0


def read_shard(input_format: InputFormat, shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """Every record of ``shard`` in input order, bad ones as rejects."""
    return READERS[input_format](shard, fields)


# --- line-based files ------------------------------------------------------------------


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


@dataclass(frozen=True)
class LongLine:
    """A line over ``MAX_LINE_BYTES``, skipped unread: its length in bytes."""

    length: int

    @property
    def reason(self) -> str:
        return f"line is {self.length:,} bytes, over the limit of {MAX_LINE_BYTES:,}"


def read_lines(path: Path, start: int, stop: int, first_line: int) -> Iterator[Tuple[int, Union[bytes, LongLine]]]:
    """(line number, bytes without the line end) for the lines in bytes
    ``start`` to ``stop``; a UTF-8 byte order mark on line 1 is dropped, and a
    line over ``MAX_LINE_BYTES`` comes as a ``LongLine``."""
    number = first_line
    limit = MAX_LINE_BYTES
    with path.open("rb") as file:
        file.seek(start)
        offset = start
        while offset < stop:
            raw = file.readline(limit + 2)  # the line, its \r\n, or a sign that it is longer
            if not raw:
                raise ValueError(f"{path}: file is shorter than when it was read first (changed while annotating?)")
            offset += len(raw)
            line: Union[bytes, LongLine] = raw
            if raw.endswith(b"\n"):
                raw = raw[:-1]
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                line = raw if len(raw) <= limit else LongLine(len(raw))
            elif len(raw) > limit:
                skipped, ended = _skip_line(file)
                offset += skipped
                line = LongLine(len(raw) + skipped - ended)
            if number == 1 and isinstance(line, bytes) and line.startswith(BOM):
                line = line[len(BOM) :]
            yield number, line
            number += 1


def _skip_line(file: Any) -> Tuple[int, int]:
    """Read to the end of the current line in chunks: the bytes read, and 1 if
    they end with a newline (0 at the end of the file)."""
    skipped = 0
    while True:
        piece = file.readline(CHUNK_BYTES)
        skipped += len(piece)
        if not piece:
            return skipped, 0
        if piece.endswith(b"\n"):
            return skipped, 1


# --- JSONL -----------------------------------------------------------------------------


def parse_line(
    raw: Union[bytes, LongLine], fields: Fields, id_type: Optional[IdType]
) -> Union[Tuple[RecordId, str], str]:
    """(id, text) of one JSONL line, or the reason it is refused. With
    ``id_type`` None any string or integer id is accepted."""
    if isinstance(raw, LongLine):
        return raw.reason
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})"
    if not line.strip():
        return "blank line, not a JSON object"
    try:
        value: Any = json.loads(line)
    except json.JSONDecodeError as exc:
        return f"invalid JSON: {exc.msg} (column {exc.colno})"
    except RecursionError:
        return "invalid JSON: nested too deeply"
    except ValueError as exc:  # an integer of more digits than Python converts
        limit = getattr(sys, "get_int_max_str_digits", lambda: 0)()
        return f"invalid JSON: a number of more than {limit} digits" if limit else f"invalid JSON: {exc}"
    if not isinstance(value, dict):
        return f"not a JSON object but {type(value).__name__}"
    if fields.id not in value:
        return f"no id field {fields.id!r}"
    if fields.text not in value:
        return f"no text field {fields.text!r}"
    record_id, text = value[fields.id], value[fields.text]
    reason = check_id(record_id, fields.id, id_type or id_type_of(record_id) or "int")
    reason = reason or check_text(text, fields.text)
    return reason if reason else (record_id, text)


def read_jsonl(shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """The records of a shard of a JSONL file, bad ones as rejects."""
    for offset, (number, raw) in enumerate(read_lines(Path(shard.file), shard.start, shard.stop, shard.first_number)):
        position, location = shard.first_position + offset, Location(shard.file, "line", number)
        parsed = parse_line(raw, fields, fields.id_type)
        if isinstance(parsed, str):
            yield Reject(position, location, parsed)
        else:
            yield Record(position, location, parsed[0], parsed[1])


def first_id_type(path: Path, fields: Fields) -> IdType:
    """The id type of the first good record of a JSONL file ("int" if none)."""
    for _, raw in read_lines(path, 0, path.stat().st_size, 1):
        parsed = parse_line(raw, fields, None)
        if not isinstance(parsed, str):
            return "int" if isinstance(parsed[0], int) else "str"
    return "int"


# --- plain text ------------------------------------------------------------------------


def read_text(shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """The records of a shard of a text file; a line that is not UTF-8 or is
    blank is a reject."""
    for offset, (number, raw) in enumerate(read_lines(Path(shard.file), shard.start, shard.stop, shard.first_number)):
        position, location = shard.first_position + offset, Location(shard.file, "line", number)
        if isinstance(raw, LongLine):
            yield Reject(position, location, raw.reason)
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield Reject(position, location, f"not UTF-8 (byte {exc.start + 1} of the line is {raw[exc.start]:#04x})")
            continue
        if not text.strip():
            yield Reject(position, location, "empty line" if not text else "line is only whitespace")
        else:
            yield Record(position, location, number, text)


# --- Parquet ---------------------------------------------------------------------------


def parquet_files(path: Path) -> List[Path]:
    """``path`` itself, or the ``*.parquet`` files under the folder ``path`` in
    sorted order."""
    if not path.is_dir():
        return [path]
    files = sorted(p for p in path.rglob("*.parquet") if p.is_file())
    if not files:
        raise ValueError(f"{path}: no .parquet files in this folder")
    return files


def id_type_of_column(path: Path, fields: Fields) -> IdType:
    """The id type of a Parquet file's id column; an error names the file when a
    column is missing or of the wrong type."""
    pa = import_pyarrow()
    schema = pa.parquet.read_schema(path)
    for name in (fields.id, fields.text):
        if name not in schema.names:
            raise ValueError(f"{path}: no column {name!r} (columns: {', '.join(schema.names)})")
    text_type = schema.field(fields.text).type
    if not (pa.types.is_string(text_type) or pa.types.is_large_string(text_type) or _is_binary(pa, text_type)):
        raise ValueError(f"{path}: text column {fields.text!r} is {text_type}, not a string")
    id_type = schema.field(fields.id).type
    if pa.types.is_integer(id_type):
        return "int"
    if pa.types.is_string(id_type) or pa.types.is_large_string(id_type):
        return "str"
    raise ValueError(f"{path}: id column {fields.id!r} is {id_type}, not an integer or a string")


def row_group_ranges(path: Path, min_rows: int) -> List[Tuple[int, int, int, int]]:
    """(first row group, stop row group, first row, rows): consecutive row groups
    joined until they hold at least ``min_rows`` rows. Row groups are not cut,
    so a shard can hold more rows than ``min_rows``."""
    pa = import_pyarrow()
    metadata = pa.parquet.ParquetFile(path).metadata
    ranges: List[Tuple[int, int, int, int]] = []
    start, first_row, rows = 0, 0, 0
    for group in range(metadata.num_row_groups):
        rows += metadata.row_group(group).num_rows
        if rows >= min_rows:
            ranges.append((start, group + 1, first_row, rows))
            start, first_row, rows = group + 1, first_row + rows, 0
    if start < metadata.num_row_groups and rows:
        ranges.append((start, metadata.num_row_groups, first_row, rows))
    return ranges


def read_parquet(shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """The records of a shard of a Parquet file, streamed in small batches; a
    null or empty text, a bad id or a string that is not UTF-8 is a reject. A
    row group that cannot be read stops the job, naming the file."""
    pa = import_pyarrow()
    offset = 0
    try:
        parquet_file = pa.parquet.ParquetFile(shard.file)
        batches = parquet_file.iter_batches(
            batch_size=READ_BATCH_ROWS, row_groups=range(shard.start, shard.stop), columns=[fields.id, fields.text]
        )
        for batch in batches:
            ids = _values(pa, batch.column(fields.id))
            texts = _values(pa, batch.column(fields.text))
            for record_id, text in zip(ids, texts):
                position = shard.first_position + offset
                location = Location(shard.file, "row", shard.first_number + offset)
                offset += 1
                reason = None
                if isinstance(record_id, bytes):
                    record_id, reason = _decode(record_id, "id")
                reason = reason or check_id(record_id, fields.id, fields.id_type)
                if reason is None and isinstance(text, bytes):
                    text, reason = _decode(text, "text")
                reason = reason or check_text(text, fields.text)
                if reason:
                    yield Reject(position, location, reason)
                else:
                    yield Record(position, location, record_id, text)  # type: ignore[arg-type]
    except (pa.ArrowException, OSError) as exc:
        groups = f"row groups {shard.start}-{shard.stop - 1}"
        raise ValueError(f"{shard.file}: {groups}: cannot read ({' '.join(str(exc).split())})") from None
    if offset != shard.size:
        raise ValueError(
            f"{shard.file}: {offset} rows in row groups {shard.start}-{shard.stop - 1}, expected {shard.size}"
        )


def _values(pa: Any, column: Any) -> List[Any]:
    """A column's values; strings as UTF-8 bytes, which a file may hold invalid
    (and pyarrow would fail the whole batch on)."""
    if pa.types.is_string(column.type):
        column = column.view(pa.binary())
    elif pa.types.is_large_string(column.type):
        column = column.view(pa.large_binary())
    return list(column.to_pylist())


def _decode(value: bytes, what: str) -> Tuple[Optional[str], Optional[str]]:
    try:
        return value.decode("utf-8"), None
    except UnicodeDecodeError as exc:
        return None, f"{what} is not UTF-8 (byte {exc.start + 1})"


def _naming_file(file: Path, read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)``, with pyarrow's errors (which name no file) naming ``file``."""
    pa = import_pyarrow()
    try:
        return read(*args)
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{file}: not a readable Parquet file ({' '.join(str(exc).split())})") from None


def _is_binary(pa: Any, data_type: Any) -> bool:
    return bool(pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type))


ShardReader = Callable[[Shard, Fields], Iterator[Union[Record, Reject]]]
READERS: Dict[InputFormat, ShardReader] = {"jsonl": read_jsonl, "text": read_text, "parquet": read_parquet}
