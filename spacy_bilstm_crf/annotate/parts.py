"""Output part files, JSONL or Parquet: writing them (buffered), and reading
them back to check what the manifest says they hold. Files are opened through
``safe_files``: never through a symbolic link."""

import json
from collections import Counter
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Dict, List, Optional, Tuple, Union

from .records import Fields, RecordId
from .safe_files import fsync_file, open_binary, open_text
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
        fsync_file(self.path)
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
        self._file: IO[str] = open_text(path, "x")

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
        self._file = open_binary(path, "x")
        self._writer = pa.parquet.ParquetWriter(self._file, schema)

    def write(self, records: List[Dict[str, Any]]) -> None:
        self._writer.write_table(self._pa.Table.from_pylist(records, schema=self._schema))

    def close(self) -> None:
        self._writer.close()
        self._file.close()


def read_part(path: Path, output_format: OutputFormat, id_field: str) -> Tuple[List[RecordId], Dict[str, int]]:
    """The ids of a part file's records, and its entities per label; an error
    names the file (and line) when it holds something annotate does not write."""
    if output_format == "jsonl":
        return _read_jsonl_part(path, id_field)
    pa = import_pyarrow()
    import pyarrow.compute as pc

    ids: List[RecordId] = []
    labels: Counter = Counter()
    try:
        with open_binary(path, "r") as file:
            for batch in pa.parquet.ParquetFile(file).iter_batches(columns=[id_field, "entities"]):
                ids.extend(batch.column(id_field).to_pylist())
                found = pc.struct_field(pc.list_flatten(batch.column("entities")), "label")
                labels.update({item["values"]: item["counts"] for item in pc.value_counts(found).to_pylist()})
    except (pa.ArrowException, OSError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not an output part annotate writes ({' '.join(str(exc).split())})") from None
    return ids, dict(labels)


def _read_jsonl_part(path: Path, id_field: str) -> Tuple[List[RecordId], Dict[str, int]]:
    ids: List[RecordId] = []
    labels: Counter = Counter()
    with open_binary(path, "r") as file:
        for number, line in enumerate(file, start=1):
            try:
                record = json.loads(line)
                ids.append(record[id_field])
                labels.update(entity["label"] for entity in record["entities"])
            except (ValueError, RecursionError, KeyError, TypeError) as exc:
                problem = f"no {exc}" if isinstance(exc, KeyError) else type(exc).__name__
                raise ValueError(f"{path}: line {number}: not an output record annotate writes ({problem})") from None
    return ids, dict(labels)
