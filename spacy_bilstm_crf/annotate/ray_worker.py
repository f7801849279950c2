"""The callable class Ray Data's ``map_batches`` runs in each worker: it loads
the pipeline once, then annotates batch after batch."""

from typing import Any, Dict, List, Optional

from .entities import doc_entities
from .fields import Fields
from .parquet import import_pyarrow
from .pipeline import load_pipeline
from .ray_columns import ENTITIES, FILE, NUMBER, POSITION, REASON, TEXT, annotated_schema


class PipelineAnnotator:
    """Annotates the good rows of a batch; bad rows pass through with null entities."""

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
        reasons = batch.column(REASON).to_pylist()
        texts = batch.column(TEXT).to_pylist()
        good = [row for row, reason in enumerate(reasons) if reason is None]
        entities: List[Optional[List[Dict[str, Any]]]] = [None] * len(reasons)
        for row, doc in zip(good, self.nlp.pipe([texts[row] for row in good], batch_size=self.batch_size)):
            entities[row] = doc_entities(doc, self.spans_key)
        columns = {name: batch.column(name) for name in (self.fields.id, POSITION, FILE, NUMBER, REASON)}
        columns[ENTITIES] = self.pa.array(entities, type=self.schema.field(ENTITIES).type)
        return self.pa.table([columns[name] for name in self.schema.names], schema=self.schema)
