"""``char_ngram_features``: per-token feature ids for Chinese character models.

For each token (one character, with spaCy's ``char`` segmenter for Chinese)
the layer gives the ids of

- the token itself (its ``NORM``),
- its left bigram (the previous token and this one) and its right bigram
  (this token and the next one), with sentinels at the doc's edges and where
  whitespace separates two tokens; the left bigram of one token is the right
  bigram of the one before, so one embedding table serves both,
- optionally, from a word segmentation of ``doc.text``: the token's position
  in its word (``B``, ``M``, ``E`` or ``S``) and the word itself.

Everything comes from the token texts and ``doc.text``: no token attribute is
set and nothing is added to the vocab's strings. The segmenter is jieba, whose
dictionary ships inside its package: nothing is downloaded, and no cache file
is read or written (jieba's own cache lives in the shared temp folder, a file
another user can plant). The segmenter's version and a fingerprint of its
dictionary are kept in the layer's attrs, so a pipeline saved with one
dictionary warns when it runs with another.
"""

import hashlib
import threading
import warnings
from functools import cache, lru_cache
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

import numpy
from spacy.attrs import IDX, LENGTH, NORM, SPACY
from spacy.strings import hash_string  # type: ignore[attr-defined]
from spacy.tokens import Doc
from thinc.api import Model
from thinc.types import Ints2d

SEGMENTERS = ("jieba",)
# Columns of the output: the token, its left and right bigram, then (with a
# segmenter) its position in its word and the word.
UNIT, LEFT_BIGRAM, RIGHT_BIGRAM, WORD_POSITION, WORD = range(5)
# Word positions; 0 is "no word" (a token that no word of the segmentation covers).
BEGIN, MIDDLE, END, SINGLE = 1, 2, 3, 4
N_WORD_POSITIONS = 5

_EDGE = numpy.uint64(hash_string("\x00spacy-bilstm-crf:edge"))
_SPACE = numpy.uint64(hash_string("\x00spacy-bilstm-crf:space"))
_MIX = numpy.uint64(0x9E3779B97F4A7C15)
# Texts longer than this are segmented every time instead of cached.
_CACHE_MAX_TEXT = 20_000


def char_ngram_features(segmenter: Optional[str] = None, hmm: bool = True) -> Model[List[Doc], List[Ints2d]]:
    """Feature ids per token, shape (n_tokens, 3), or (n_tokens, 5) with a
    ``segmenter`` ("jieba"); ``hmm``: let jieba's HMM join characters it has no
    dictionary word for (new names, mostly)."""
    if segmenter is not None and segmenter not in SEGMENTERS:
        raise ValueError(f"Unknown segmenter {segmenter!r}: choose one of {', '.join(SEGMENTERS)} or null.")
    attrs: Dict[str, Any] = {"segmenter": segmenter, "hmm": hmm}
    if segmenter is not None:
        attrs.update(segmenter_identity(segmenter))
    return Model("char_ngram_features", _forward, attrs=attrs)


def n_columns(model: Model) -> int:
    """How many feature columns the layer gives."""
    return 3 if model.attrs["segmenter"] is None else 5


def _forward(model: Model[List[Doc], List[Ints2d]], docs: List[Doc], is_train: bool) -> Tuple[List[Ints2d], Callable]:
    segmenter = model.attrs["segmenter"]
    if segmenter is not None:
        _warn_if_segmenter_changed(model)
    features = [
        cast(Ints2d, model.ops.asarray(cast(Ints2d, _doc_features(doc, segmenter, model.attrs["hmm"])))) for doc in docs
    ]
    return features, lambda d_features: []


def _doc_features(doc: Doc, segmenter: Optional[str], hmm: bool) -> numpy.ndarray:
    n_tokens = len(doc)
    columns = 3 if segmenter is None else 5
    ids = numpy.zeros((n_tokens, columns), dtype="uint64")  # (n_tokens, columns)
    if n_tokens == 0:
        return ids
    token = doc.to_array([NORM, SPACY, IDX, LENGTH]).astype("uint64")  # (n_tokens, 4)
    units, spaced = token[:, 0], token[:, 1].astype(bool)
    # previous[i]: the unit before token i, or a sentinel at the edge or after whitespace.
    previous = numpy.empty_like(units)
    previous[0] = _EDGE
    previous[1:] = numpy.where(spaced[:-1], _SPACE, units[:-1])
    following = numpy.empty_like(units)
    following[-1] = _EDGE
    following[:-1] = numpy.where(spaced[:-1], _SPACE, units[1:])
    ids[:, UNIT] = units
    ids[:, LEFT_BIGRAM] = _bigram(previous, units)
    ids[:, RIGHT_BIGRAM] = _bigram(units, following)
    if segmenter is not None:
        starts = token[:, 2].astype("int64")
        ends = starts + token[:, 3].astype("int64")
        ids[:, WORD_POSITION], ids[:, WORD] = _word_features(doc.text, starts, ends, hmm)
    return ids


def _bigram(first: numpy.ndarray, second: numpy.ndarray) -> numpy.ndarray:
    # An ordered pair of 64-bit string hashes to one id (arithmetic wraps modulo 2**64).
    with numpy.errstate(over="ignore"):
        return first * _MIX + second


def _word_features(
    text: str, starts: numpy.ndarray, ends: numpy.ndarray, hmm: bool
) -> Tuple[numpy.ndarray, numpy.ndarray]:
    """Each token's position in the word that holds its first character, and that word's id."""
    word_starts, word_ends, word_ids = segment(text, hmm)  # (n_words,) each
    if len(word_starts) == 0:
        return numpy.zeros(len(starts), dtype="uint64"), numpy.zeros(len(starts), dtype="uint64")
    first = numpy.searchsorted(word_starts, starts, side="right") - 1  # word of the token's first character
    last = numpy.searchsorted(word_starts, ends - 1, side="right") - 1  # word of its last character
    covered = (first >= 0) & (word_ends[first.clip(0)] > starts)
    first, last = first.clip(0), last.clip(0)
    begins = word_starts[first] == starts
    closes = word_ends[last] == ends
    position = numpy.where(begins, numpy.where(closes, SINGLE, BEGIN), numpy.where(closes, END, MIDDLE))
    position = numpy.where(covered, position, 0).astype("uint64")
    return position, numpy.where(covered, word_ids[first], 0).astype("uint64")


def segment(text: str, hmm: bool = True) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    """jieba's words of ``text``: start and end character offsets and word ids."""
    if len(text) <= _CACHE_MAX_TEXT:
        return _cached_segment(text, hmm)
    return _segment(text, hmm)


def clear_segment_cache() -> None:
    """Forget the segmentations of short texts kept so far (for timing runs
    over texts seen before, and to free the memory)."""
    _cached_segment.cache_clear()


@lru_cache(maxsize=1 << 16)
def _cached_segment(text: str, hmm: bool) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    return _segment(text, hmm)


def _segment(text: str, hmm: bool) -> Tuple[numpy.ndarray, numpy.ndarray, numpy.ndarray]:
    words = [(word, start, end) for word, start, end in _jieba().tokenize(text, HMM=hmm) if not word.isspace()]
    starts = numpy.fromiter((start for _, start, _ in words), dtype="int64", count=len(words))
    ends = numpy.fromiter((end for _, _, end in words), dtype="int64", count=len(words))
    ids = numpy.fromiter((_word_id(word) for word, _, _ in words), dtype="uint64", count=len(words))
    return starts, ends, ids


def _word_id(word: str) -> int:
    # Not hash_string: a lone surrogate cannot be encoded as UTF-8, and a word id
    # must not depend on the process (as Python's hash() does).
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


_JIEBA_LOCK = threading.Lock()
_JIEBA: List[Any] = []


def _jieba() -> Any:
    """This process's jieba tokenizer, built from the dictionary in its package
    (about a second), without jieba's cache file."""
    with _JIEBA_LOCK:
        if not _JIEBA:
            jieba = _import_jieba()
            tokenizer = jieba.Tokenizer()
            with tokenizer.get_dict_file() as dictionary:
                tokenizer.FREQ, tokenizer.total = tokenizer.gen_pfdict(dictionary)
            tokenizer.initialized = True
            _JIEBA.append(tokenizer)
        return _JIEBA[0]


def _import_jieba() -> Any:
    try:
        import jieba
    except ImportError as error:  # pragma: no cover - jieba is a dependency
        raise ImportError(
            "The char_ngram_features layer with segmenter 'jieba' needs jieba: pip install 'jieba>=0.42.1,<0.43'"
        ) from error
    return jieba


@cache
def segmenter_identity(segmenter: str) -> Dict[str, str]:
    """The installed segmenter's version and the sha256 of its dictionary."""
    jieba = _import_jieba()
    with jieba.Tokenizer().get_dict_file() as dictionary:
        digest = hashlib.sha256(dictionary.read()).hexdigest()
    return {"segmenter_version": str(jieba.__version__), "dictionary_sha256": digest}


def _warn_if_segmenter_changed(model: Model) -> None:
    installed = segmenter_identity(model.attrs["segmenter"])
    saved = {key: model.attrs.get(key) for key in installed}
    if _CHECKED.get(model.id) == saved:
        return
    if saved != installed:
        warnings.warn(
            f"This pipeline was trained with {model.attrs['segmenter']} {saved['segmenter_version']} "
            f"(dictionary sha256 {str(saved['dictionary_sha256'])[:12]}), but {installed['segmenter_version']} "
            f"(dictionary sha256 {installed['dictionary_sha256'][:12]}) is installed: word boundaries may "
            "differ from training, and with them the entities.",
            stacklevel=3,
        )
    _CHECKED[model.id] = saved


# Per layer (by id), the saved identity last compared with the installed segmenter.
_CHECKED: Dict[int, Dict[str, Any]] = {}
