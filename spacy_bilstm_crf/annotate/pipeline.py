"""Loading the pipeline that annotates, in this process or in a worker."""

from typing import Optional

from spacy.language import Language


def load_pipeline(model: str, code: Optional[str] = None, gpu: bool = False) -> Language:
    """``spacy.load(model)``, after importing ``code`` (a Python file that
    registers custom components) and, with ``gpu``, ``spacy.require_gpu()``."""
    import spacy

    if code is not None:
        spacy.util.import_file("annotate_code", code)
    if gpu:
        spacy.require_gpu()
    return spacy.load(model)
