"""The package's span <-> tag conversion, as bench/ uses it (nothing is
converted here). Predicted BIO tags are read leniently, as seqeval and
conlleval read them: an ``I-X`` that continues no X entity starts one.

The lenient reader is ``spacy_bilstm_crf.tag_scheme.tags_to_spans(...,
lenient=True)`` where the package has it, else the converter's reader of the
same name and keyword (``spacy_bilstm_crf.convert.schemes``).
"""

import inspect
from typing import Callable, List, Sequence, Tuple

from spacy_bilstm_crf import tag_scheme
from spacy_bilstm_crf.tag_scheme import spans_to_tags

Span = Tuple[int, int, str]


def _lenient_reader() -> Callable[..., List[Span]]:
    if "lenient" in inspect.signature(tag_scheme.tags_to_spans).parameters:
        return tag_scheme.tags_to_spans
    from spacy_bilstm_crf.convert.schemes import tags_to_spans

    return tags_to_spans


_READ = _lenient_reader()


def bio_tags(length: int, spans: Sequence[Span]) -> List[str]:
    """IOB2 tags of ``length`` tokens with entity ``spans``."""
    return list(spans_to_tags(length, list(spans), "BIO"))


def read_bio(tags: Sequence[str]) -> List[Span]:
    """Entity spans of predicted IOB2 tags, read leniently."""
    return [(int(s), int(e), str(label)) for s, e, label in _READ(list(tags), "BIO", lenient=True)]
