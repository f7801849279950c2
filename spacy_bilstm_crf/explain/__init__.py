"""Trace how a ``crf_ner`` pipeline recognises the entities of one text.

``explain(nlp, text)`` returns a :class:`Trace` with each stage's real shapes
and values; ``render_text`` and ``render_html`` show it, ``Trace.to_dict``
gives it as JSON-able data. The command line runs it as
``spacy-bilstm-crf explain MODEL TEXT``.
"""

from .data import Trace
from .html import render_html
from .terminal import render_text
from .trace import explain

__all__ = ["Trace", "explain", "render_html", "render_text"]
