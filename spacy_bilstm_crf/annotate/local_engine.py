"""The local engine: ``nlp.pipe(batch_size, n_process)`` over the pending
shards, one commit per shard."""

from collections import Counter
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..threads import configure_threads
from .annotation import doc_entities, load_pipeline, output_record, text_too_long
from .inputs import read_shard
from .output_folder import OutputFolder
from .parts import PartWriter
from .records import Plan, Record, RecordId, Reject, RejectedRecordError, Shard
from .reporting import Progress
from .settings import AnnotateSettings


class _OpenShard:
    """A shard whose records are being written."""

    def __init__(self, shard: Shard, writer: PartWriter) -> None:
        self.shard = shard
        self.writer = writer
        self.entities: Counter = Counter()


def run_local(
    plan: Plan, pending: Sequence[Shard], settings: AnnotateSettings, output: OutputFolder, progress: Progress
) -> None:
    """Annotate the records of ``pending`` in input order and commit each shard
    as soon as its last doc is written."""
    nlp = load_pipeline(settings.model, str(settings.code) if settings.code else None)
    configure_threads(nlp, settings.n_process)
    rejects: Dict[int, List[Reject]] = {}

    def texts() -> Iterator[Tuple[str, Tuple[int, RecordId]]]:
        for shard in pending:
            shard_rejects = rejects.setdefault(shard.index, [])
            for item in read_shard(plan.input_format, shard, plan.fields):
                if isinstance(item, Record):
                    too_long = text_too_long(nlp, item.text)
                    if too_long:
                        item = Reject(item.position, item.location, too_long)
                if isinstance(item, Reject):
                    if settings.strict:
                        raise RejectedRecordError(item)
                    shard_rejects.append(item)
                else:
                    yield item.text, (shard.index, item.id)

    def open_shard(shard: Shard) -> _OpenShard:
        writer = PartWriter(
            output.staged_part(shard), output.output_format, plan.fields, settings.spans_key is not None
        )
        return _OpenShard(shard, writer)

    def commit(done: _OpenShard) -> None:
        staged = done.writer.close()
        shard_rejects = rejects.pop(done.shard.index)
        output.commit([done.shard], [staged] if staged else [], shard_rejects, done.writer.count, dict(done.entities))
        progress.advance(len(shard_rejects))

    # Docs come out in input order; a shard is complete once a doc of a later
    # shard comes out (the reader has moved on) or the input ends.
    remaining = iter(pending)
    current: Optional[_OpenShard] = None
    docs = nlp.pipe(texts(), as_tuples=True, batch_size=settings.batch_size, n_process=settings.n_process)
    for doc, (shard_index, record_id) in docs:
        while current is None or current.shard.index != shard_index:
            if current is not None:
                commit(current)
            current = open_shard(next(remaining))
        entities = doc_entities(doc, settings.spans_key)
        current.writer.add(output_record(plan.fields.id, record_id, entities))
        current.entities.update(entity["label"] for entity in entities)
        progress.advance(1)
    if current is not None:
        commit(current)
    for shard in remaining:  # trailing shards with no good record
        commit(open_shard(shard))
