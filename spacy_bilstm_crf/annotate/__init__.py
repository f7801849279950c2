"""``spacy-bilstm-crf annotate``: run a pipeline over a corpus of any size,
locally or on a Ray cluster, resumable, with every bad record accounted for.

Modules: ``settings`` (what a run is asked to do, the formats), ``records``
(records, rejects, shards and the plan), ``inputs`` (planning and reading each
input format), ``annotation`` (the pipeline, its fingerprint and its output
records), ``parts`` (writing part files and reading them back),
``output_folder`` (the output folder and its manifest, trusted in nothing),
``safe_files`` (files in it, never through a link), ``local_engine``,
``ray_engine`` and ``ray_tasks`` (the engines), ``reporting`` (progress and
summary) and ``run`` (one run of the command).
"""

from .records import Location, Record, Reject, RejectedRecordError
from .reporting import Summary
from .run import annotate
from .settings import AnnotateSettings

__all__ = ["AnnotateSettings", "Location", "Record", "Reject", "RejectedRecordError", "Summary", "annotate"]
