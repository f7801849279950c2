"""Registered model architectures."""

from .crf_tagger import build_crf_tagger, get_crf

__all__ = ["build_crf_tagger", "get_crf"]
