"""Convert column-format NER data (``TOKEN TAG`` per line) to spaCy DocBin files."""

from .column import (
    ColumnCorpus,
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
from .schemes import (
    SCHEMES,
    ConversionError,
    Repair,
    Span,
    detect_scheme,
    spans_to_tags,
    tags_to_spans,
)

__all__ = [
    "SCHEMES",
    "ColumnCorpus",
    "ConversionError",
    "ConversionSummary",
    "Repair",
    "Sentence",
    "Span",
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
