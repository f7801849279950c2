"""Convert column-format NER data (``TOKEN TAG`` per line) to spaCy DocBin files.

Importing this package loads neither spaCy nor torch: spaCy is imported when
docs are built. Tag schemes live in :mod:`spacy_bilstm_crf.tag_scheme`.
"""

from ..tag_scheme import SCHEME_NAMES, Repair, Span, TagSequenceError, detect_scheme, spans_to_tags, tags_to_spans
from .column import (
    ColumnCorpus,
    ConversionError,
    ConversionSummary,
    Sentence,
    convert,
    docs_to_sentences,
    guess_lang,
    read_column_file,
    sentences_to_docs,
    split_dev,
    write_column_file,
    write_docbin,
)

__all__ = [
    "SCHEME_NAMES",
    "ColumnCorpus",
    "ConversionError",
    "ConversionSummary",
    "Repair",
    "Sentence",
    "Span",
    "TagSequenceError",
    "convert",
    "detect_scheme",
    "docs_to_sentences",
    "guess_lang",
    "read_column_file",
    "sentences_to_docs",
    "spans_to_tags",
    "split_dev",
    "tags_to_spans",
    "write_column_file",
    "write_docbin",
]
