"""Writing output part files, JSONL or Parquet, buffered."""

import json
import os
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Dict, List, Optional, Union

from .records import Fields
from .settings import OutputFormat, import_pyarrow

if TYPE_CHECKING:
    import pyarrow

BUFFER_RECORDS = 1000


class PartWriter:
    """Collects output records and writes them to ``path``, which is created
    with the first record; ``close`` returns the path, or None if no record came."""

    def __init__(self, path: Path, output_format: OutputFormat, fields: Fields, with_confidence: bool) -> None:
        self.path = path
        self.output_format = output_format
        self.fields = fields
        self.with_confidence = with_confidence
        self.count = 0
        self._buffer: List[Dict[str, Any]] = []
        self._writer: Optional[Union[JsonlPartWriter, ParquetPartWriter]] = None

    def add(self, record: Dict[str, Any]) -> None:
        self._buffer.append(record)
        self.count += 1
        if len(self._buffer) >= BUFFER_RECORDS:
            self._flush()

    def close(self) -> Optional[Path]:
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        fsync_path(self.path)
        return self.path

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            if self.output_format == "jsonl":
                self._writer = JsonlPartWriter(self.path)
            else:
                self._writer = ParquetPartWriter(self.path, output_schema(self.fields, self.with_confidence))
        self._writer.write(self._buffer)
        self._buffer = []


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


def output_schema(fields: Fields, with_confidence: bool) -> "pyarrow.Schema":
    """The schema of output records: the id and a list of entities."""
    pa = import_pyarrow()
    entity = [("start", pa.int64()), ("end", pa.int64()), ("label", pa.string()), ("text", pa.string())]
    if with_confidence:
        entity.append(("confidence", pa.float64()))
    id_type = pa.int64() if fields.id_type == "int" else pa.string()
    return pa.schema([(fields.id, id_type), ("entities", pa.list_(pa.struct(entity)))])


class ParquetPartWriter:
    """Writes output records to one Parquet file."""

    def __init__(self, path: Path, schema: "pyarrow.Schema") -> None:
        pa = import_pyarrow()
        self.path = path
        self._schema = schema
        self._pa = pa
        self._writer = pa.parquet.ParquetWriter(str(path), schema)

    def write(self, records: List[Dict[str, Any]]) -> None:
        self._writer.write_table(self._pa.Table.from_pylist(records, schema=self._schema))

    def close(self) -> None:
        self._writer.close()


def fsync_path(path: Path) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
