"""JSONL: reading the records of a shard, and writing output parts."""

import json
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Tuple, Union

from .fields import Fields, check_id, check_text, id_type_of
from .lines import read_lines
from .records import IdType, Location, Record, RecordId, Reject
from .shards import Shard


def parse_line(raw: bytes, fields: Fields, id_type: Optional[IdType]) -> Union[Tuple[RecordId, str], str]:
    """(id, text) of one JSONL line, or the reason it is refused. With
    ``id_type`` None any string or integer id is accepted."""
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


class JsonlPartWriter:
    """Writes output records to one JSONL file, one object per line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] = path.open("w", encoding="utf8")

    def write(self, records: List[Dict[str, Any]]) -> None:
        for record in records:
            self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")

    def close(self) -> None:
        self._file.close()
