"""``spacy-bilstm-crf annotate``: run a pipeline over a corpus of any size,
locally or on a Ray cluster, resumable, with every bad record accounted for.

Modules: ``formats`` (which format a path is), ``lines``/``jsonl``/``text``/
``parquet`` (reading and writing each format), ``plan``/``shards`` (cutting the
input into shards), ``manifest``/``output``/``parts`` (the output folder and
what is done), ``local`` and ``ray_*`` (the engines), ``progress`` and
``summary`` (reporting), ``run`` (one run of the command).
"""

from .records import Location, Record, Reject, RejectedRecordError
from .run import annotate
from .settings import AnnotateSettings
from .summary import Summary

__all__ = ["AnnotateSettings", "Location", "Record", "Reject", "RejectedRecordError", "Summary", "annotate"]
