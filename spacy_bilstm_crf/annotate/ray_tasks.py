"""What runs inside Ray for the Ray engine: the Arrow columns of the rows that
flow through it, the datasource whose read tasks read the pending shards
(``ShardDatasource``), and the callable class that Ray Data's ``map_batches``
runs in each worker (``PipelineAnnotator``). Imports Ray Data.

A read task yields each record's line (or row) and, for a bad record, the
reason. Ray's own ``read_json`` and ``read_text`` stop at the first bad line and
know no line numbers, hence this datasource."""

from functools import partial
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .annotation import doc_entities, load_pipeline, text_too_long
from .inputs import read_shard
from .parts import output_schema
from .records import Fields, Reject, RejectedRecordError, Shard
from .settings import InputFormat, import_pyarrow

POSITION = "_annotate_position"
FILE = "_annotate_file"
NUMBER = "_annotate_number"
TEXT = "_annotate_text"
REASON = "_annotate_reason"
ENTITIES = "entities"
BLOCK_ROWS = 1024


def read_schema(fields: Fields) -> Any:
    """A read row: a good record has an id and a text, a bad one a reason."""
    pa = import_pyarrow()
    return pa.schema(
        [
            (POSITION, pa.int64()),
            (FILE, pa.string()),
            (NUMBER, pa.int64()),
            (fields.id, pa.int64() if fields.id_type == "int" else pa.string()),
            (TEXT, pa.string()),
            (REASON, pa.string()),
        ]
    )


def annotated_schema(fields: Fields, with_confidence: bool) -> Any:
    """An annotated row: the output record's columns, then where it came from
    and, for a bad record, why it was refused (its entities are null)."""
    pa = import_pyarrow()
    record = output_schema(fields, with_confidence)
    return pa.schema(
        list(record) + [(POSITION, pa.int64()), (FILE, pa.string()), (NUMBER, pa.int64()), (REASON, pa.string())]
    )


# --- reading -------------------------------------------------------------------------


class ShardDatasource(Datasource):
    """The records of ``shards`` as rows of ``read_schema(fields)``; with
    ``strict`` the first bad record fails the read."""

    def __init__(self, input_format: InputFormat, shards: Sequence[Shard], fields: Fields, strict: bool) -> None:
        super().__init__()
        self.input_format = input_format
        self.shards = list(shards)
        self.fields = fields
        self.strict = strict

    def estimate_inmemory_data_size(self) -> Optional[int]:
        return sum(_shard_bytes(self.input_format, shard) for shard in self.shards)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: Optional[int] = None, data_context: Any = None
    ) -> List[ReadTask]:
        tasks = []
        for shard in self.shards:
            metadata = BlockMetadata(
                num_rows=shard.size,
                size_bytes=_shard_bytes(self.input_format, shard),
                exec_stats=None,
                input_files=(shard.file,),
            )
            read = partial(read_blocks, self.input_format, shard, self.fields, self.strict)
            tasks.append(
                ReadTask(read, metadata, schema=read_schema(self.fields), per_task_row_limit=per_task_row_limit)
            )
        return tasks


def read_blocks(input_format: InputFormat, shard: Shard, fields: Fields, strict: bool) -> Iterator[Any]:
    """The rows of one shard, in Arrow tables of at most ``BLOCK_ROWS`` rows."""
    pa = import_pyarrow()
    schema = read_schema(fields)
    rows: List[dict] = []
    for item in read_shard(input_format, shard, fields):
        if isinstance(item, Reject):
            if strict:
                raise RejectedRecordError(item)
            rows.append(
                {POSITION: item.position, FILE: item.location.file, NUMBER: item.location.number, REASON: item.reason}
            )
        else:
            rows.append(
                {
                    POSITION: item.position,
                    FILE: item.location.file,
                    NUMBER: item.location.number,
                    fields.id: item.id,
                    TEXT: item.text,
                }
            )
        if len(rows) == BLOCK_ROWS:
            yield pa.Table.from_pylist(rows, schema=schema)
            rows = []
    if rows:
        yield pa.Table.from_pylist(rows, schema=schema)


def _shard_bytes(input_format: InputFormat, shard: Shard) -> int:
    # Line-based shards know their bytes; Parquet ones are guessed at 1 KB a row.
    return shard.stop - shard.start if input_format != "parquet" else 1024 * shard.size


# --- annotating ----------------------------------------------------------------------


class PipelineAnnotator:
    """Annotates the good rows of a batch; bad rows pass through with null
    entities, and so do texts over the pipeline's max_length, which become
    rejects here (under ``--strict`` the engine stops at the first of them)."""

    def __init__(
        self, model: str, fields: Fields, batch_size: int, spans_key: Optional[str], code: Optional[str], gpu: bool
    ) -> None:
        self.nlp = load_pipeline(model, code, gpu=gpu)
        self.fields = fields
        self.batch_size = batch_size
        self.spans_key = spans_key
        self.schema = annotated_schema(fields, spans_key is not None)
        self.pa = import_pyarrow()

    def __call__(self, batch: Any) -> Any:
        texts = batch.column(TEXT).to_pylist()
        reasons = [
            reason if reason is not None else text_too_long(self.nlp, text)
            for reason, text in zip(batch.column(REASON).to_pylist(), texts)
        ]
        good = [row for row, reason in enumerate(reasons) if reason is None]
        entities: List[Optional[List[Dict[str, Any]]]] = [None] * len(reasons)
        for row, doc in zip(good, self.nlp.pipe([texts[row] for row in good], batch_size=self.batch_size)):
            entities[row] = doc_entities(doc, self.spans_key)
        columns = {name: batch.column(name) for name in (self.fields.id, POSITION, FILE, NUMBER)}
        columns[REASON] = self.pa.array(reasons, type=self.pa.string())
        columns[ENTITIES] = self.pa.array(entities, type=self.schema.field(ENTITIES).type)
        return self.pa.table([columns[name] for name in self.schema.names], schema=self.schema)
