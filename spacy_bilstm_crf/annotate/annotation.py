"""The pipeline that annotates: loading it, in this process or in a worker;
its fingerprint, which a resumed job must match; the texts it refuses; and the
entities of the docs it makes as output records."""

import hashlib
import importlib.util
import os
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from spacy.language import Language
from spacy.tokens import Doc

from ..safe_text import printable
from .records import RecordId
from .safe_files import open_binary

HASH_CHUNK = 1 << 20

CONFIDENCE_DIGITS = 6


def doc_entities(doc: Doc, spans_key: Optional[str] = None) -> List[Dict[str, Any]]:
    """``doc.ents`` as {start, end (character offsets), label, text}. With
    ``spans_key``, each gets the ``confidence`` of the span in
    ``doc.spans[spans_key]`` with the same tokens and label (its
    ``attrs["scores"]`` entry, rounded to 6 digits), or null if there is none."""
    entities: List[Dict[str, Any]] = [
        {"start": ent.start_char, "end": ent.end_char, "label": ent.label_, "text": ent.text} for ent in doc.ents
    ]
    if spans_key is not None:
        scores = span_scores(doc, spans_key)
        for entity, ent in zip(entities, doc.ents):
            score = scores.get((ent.start, ent.end, ent.label_))
            entity["confidence"] = None if score is None else round(score, CONFIDENCE_DIGITS)
    return entities


def span_scores(doc: Doc, spans_key: str) -> Dict[Tuple[int, int, str], float]:
    """(start token, end token, label) -> score of the scored spans under ``spans_key``."""
    if spans_key not in doc.spans:
        raise ValueError(
            f"--spans-key {spans_key!r}: the pipeline set no doc.spans[{spans_key!r}] "
            f"(keys set: {printable(', '.join(sorted(doc.spans))) or 'none'})"
        )
    group = doc.spans[spans_key]
    scores = group.attrs.get("scores")
    if scores is None:
        raise ValueError(f"--spans-key {spans_key!r}: doc.spans[{spans_key!r}] has no attrs['scores']")
    if len(scores) != len(group):
        raise ValueError(f"--spans-key {spans_key!r}: {len(group)} spans but {len(scores)} scores")
    return {(span.start, span.end, span.label_): float(score) for span, score in zip(group, scores)}


def output_record(id_field: str, record_id: RecordId, entities: List[Dict[str, Any]]) -> Dict[str, Any]:
    """One line (or row) of the output."""
    return {id_field: record_id, "entities": entities}


def load_pipeline(model: str, code: Optional[str] = None, gpu: bool = False) -> Language:
    """The pipeline ``model``, loaded as every command loads one
    (:func:`spacy_bilstm_crf.loading.load_pipeline`: a folder is checked
    before spacy-transformers reads it), after importing ``code`` (a Python
    file that registers custom components) and, with ``gpu``,
    ``spacy.require_gpu()``."""
    import spacy

    from ..loading import load_pipeline as load_checked

    if code is not None:
        spacy.util.import_file("annotate_code", code)
    if gpu:
        spacy.require_gpu()
    return load_checked(model)


def text_too_long(nlp: Language, text: str) -> Optional[str]:
    """Why ``text`` is refused, if it is over the pipeline's ``max_length``
    (spaCy would fail the whole batch with E088): such a text is a reject, not
    split, since the model never saw documents that long."""
    if len(text) <= nlp.max_length:
        return None
    return f"text is {len(text):,} characters, over the pipeline's max_length of {nlp.max_length:,} (nlp.max_length)"


def model_fingerprint(model: str) -> Dict[str, str]:
    """What the pipeline ``model`` is made of: each file of its folder (or, for
    an installed package, the package's folder) by its path, as
    ``sha256:<hex>``. Symbolic links are not followed (a link is recorded by its
    target: ``link:<target>``), bytecode caches are left out, and ``blank:xx``
    has no files."""
    if model.startswith("blank:"):
        return {}
    folder = Path(model)
    if not folder.exists():
        folder = _package_folder(model)
    return folder_fingerprint(folder)


def code_fingerprint(code: Optional[Path]) -> Optional[str]:
    """The sha256 of the ``--code`` file."""
    return None if code is None else _sha256(code.read_bytes())


def folder_fingerprint(folder: Path) -> Dict[str, str]:
    if not folder.is_dir():
        return {".": "sha256:" + _sha256(folder.read_bytes())}
    found: Dict[str, str] = {}
    for parent, folders, files in os.walk(folder):  # os.walk follows no link to a folder
        folders[:] = sorted(name for name in folders if name != "__pycache__")
        for name in sorted(files) + [name for name in folders if os.path.islink(os.path.join(parent, name))]:
            path = Path(parent, name)
            relative = path.relative_to(folder).as_posix()
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[relative] = f"link:{os.readlink(path)}"
            elif stat.S_ISREG(mode) and not name.endswith(".pyc"):
                found[relative] = "sha256:" + _file_sha256(path)
            elif not stat.S_ISREG(mode):
                found[relative] = "other"
    return found


def _package_folder(name: str) -> Path:
    """The folder of the installed package ``name``, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ValueError(f"{name}: no such pipeline folder or installed package")
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    if spec.origin is None:
        raise ValueError(f"{name}: no such pipeline folder or installed package")
    return Path(spec.origin)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open_binary(path, "r") as file:  # not through a link swapped in since the walk
        for chunk in iter(lambda: file.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
