"""Pipeline components."""

from .crf_ner import DEFAULT_CRF_NER_MODEL, CRFEntityRecognizer, make_crf_ner

__all__ = ["CRFEntityRecognizer", "DEFAULT_CRF_NER_MODEL", "make_crf_ner"]
