"""Reading the records of one shard, whatever the input format."""

from typing import Callable, Dict, Iterator, Union

from .fields import Fields
from .formats import InputFormat
from .jsonl import read_jsonl
from .parquet import read_parquet
from .records import Record, Reject
from .shards import Shard
from .text import read_text

ShardReader = Callable[[Shard, Fields], Iterator[Union[Record, Reject]]]
READERS: Dict[InputFormat, ShardReader] = {"jsonl": read_jsonl, "text": read_text, "parquet": read_parquet}


def read_shard(input_format: InputFormat, shard: Shard, fields: Fields) -> Iterator[Union[Record, Reject]]:
    """Every record of ``shard`` in input order, bad ones as rejects."""
    return READERS[input_format](shard, fields)
