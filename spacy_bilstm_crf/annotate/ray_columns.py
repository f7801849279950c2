"""The Arrow columns of the rows that flow through the Ray engine: what a read
task yields, and what an annotating worker returns."""

from typing import Any

from .fields import Fields
from .parquet import import_pyarrow, output_schema

POSITION = "_annotate_position"
FILE = "_annotate_file"
NUMBER = "_annotate_number"
TEXT = "_annotate_text"
REASON = "_annotate_reason"
ENTITIES = "entities"


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
