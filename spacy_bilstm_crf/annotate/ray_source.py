"""A Ray Data datasource that reads the pending shards of a plan, one read task
per shard, with each record's line (or row) and, for bad records, the reason.
Ray's own ``read_json`` and ``read_text`` stop at the first bad line and know no
line numbers, hence this datasource."""

from functools import partial
from typing import Any, Iterator, List, Optional, Sequence

from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from .fields import Fields
from .formats import InputFormat
from .parquet import import_pyarrow
from .ray_columns import FILE, NUMBER, POSITION, REASON, TEXT, read_schema
from .readers import read_shard
from .records import Reject, RejectedRecordError
from .shards import Shard

BLOCK_ROWS = 1024


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
