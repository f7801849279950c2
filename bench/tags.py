"""The package's span <-> tag conversion, as bench/ uses it (nothing is
converted here). Predicted BIO tags are read leniently, as seqeval and
conlleval read them: an ``I-X`` that continues no X entity starts one."""

from typing import List, Sequence, Tuple

from spacy_bilstm_crf.tag_scheme import spans_to_tags, tags_to_spans

Span = Tuple[int, int, str]


def bio_tags(length: int, spans: Sequence[Span]) -> List[str]:
    """IOB2 tags of ``length`` tokens with entity ``spans``."""
    return spans_to_tags(length, list(spans), "BIO")


def read_bio(tags: Sequence[str]) -> List[Span]:
    """Entity spans of predicted IOB2 tags, read leniently."""
    return tags_to_spans(list(tags), "BIO", lenient=True)
