"""Parquet: planning shards from row groups, reading the records of a shard,
and writing output parts. Needs pyarrow (the ``parquet`` extra)."""

from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Tuple, Union

from .fields import Fields, check_id, check_text
from .records import IdType, Location, Record, Reject
from .shards import Shard

if TYPE_CHECKING:
    import pyarrow

READ_BATCH_ROWS = 1024


def import_pyarrow() -> Any:
    """pyarrow, or an error that says how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise ValueError('Parquet input or output needs pyarrow: pip install "spacy-bilstm-crf[parquet]"') from exc
    return pyarrow


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
    null or empty text, a null id or a text that is not UTF-8 is a reject."""
    pa = import_pyarrow()
    parquet_file = pa.parquet.ParquetFile(shard.file)
    batches = parquet_file.iter_batches(
        batch_size=READ_BATCH_ROWS, row_groups=range(shard.start, shard.stop), columns=[fields.id, fields.text]
    )
    offset = 0
    for batch in batches:
        ids = batch.column(fields.id).to_pylist()
        texts = batch.column(fields.text).to_pylist()
        for record_id, text in zip(ids, texts):
            position = shard.first_position + offset
            location = Location(shard.file, "row", shard.first_number + offset)
            offset += 1
            if isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield Reject(position, location, f"text is not UTF-8 (byte {exc.start + 1})")
                    continue
            reason = check_id(record_id, fields.id, fields.id_type) or check_text(text, fields.text)
            if reason:
                yield Reject(position, location, reason)
            else:
                yield Record(position, location, record_id, text)
    if offset != shard.size:
        raise ValueError(
            f"{shard.file}: {offset} rows in row groups {shard.start}-{shard.stop - 1}, expected {shard.size}"
        )


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


def _is_binary(pa: Any, data_type: Any) -> bool:
    return bool(pa.types.is_binary(data_type) or pa.types.is_large_binary(data_type))
