"""``spacy-bilstm-crf.CharNgramEmbed.v1``: character and bigram embeddings for
Chinese, with optional word-boundary features; the ``embed`` of spaCy's
``spacy.Tok2Vec.v2``, so ``crf_ner`` and spaCy's own ``ner`` can use it alike."""

from typing import Callable, List, Optional, Tuple, cast

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import (
    Dropout,
    Embed,
    HashEmbed,
    Maxout,
    Model,
    Ragged,
    chain,
    concatenate,
    list2ragged,
    ragged2list,
    with_array,
)
from thinc.types import Floats2d, Ints2d

from ..layers.char_features import (
    LEFT_BIGRAM,
    N_WORD_POSITIONS,
    RIGHT_BIGRAM,
    UNIT,
    WORD,
    WORD_POSITION,
    char_ngram_features,
    clear_segment_cache,
)

__all__ = ["CharNgramEmbed_v1", "clear_segment_cache", "is_char_ngram_embed"]

_SEED = 2718  # the hash seeds of the tables: fixed, so the same config gives the same ids


@registry.architectures("spacy-bilstm-crf.CharNgramEmbed.v1")
def CharNgramEmbed_v1(
    width: int = 96,
    char_rows: int = 8000,
    bigram_rows: int = 50000,
    bigrams: bool = True,
    segmenter: Optional[str] = "jieba",
    word_rows: int = 20000,
    position_width: int = 16,
    hmm: bool = True,
) -> Model[List[Doc], List[Floats2d]]:
    """Per-token vectors of width ``width`` from the token (a character), its
    left and right bigrams and, with a ``segmenter``, the token's position in its
    word (B/M/E/S) and the word, mixed by one Maxout layer.

    The features come from the token texts and ``doc.text`` (see
    ``layers/char_features.py``). Each is hash-embedded (four hashes to
    ``*_rows`` rows, summed: two strings share a vector only if all four
    collide); the left and right bigrams share one table, since one token's
    right bigram is the next one's left.

    width (int): Output width, and the width of the character, bigram and word tables.
    char_rows (int): Rows of the character table.
    bigram_rows (int): Rows of the bigram table.
    bigrams (bool): Embed the bigrams (False: the character alone, for ablations).
    segmenter (Optional[str]): "jieba" for word-boundary features, or None.
    word_rows (int): Rows of the word table (with a segmenter).
    position_width (int): Width of the word-position embedding (with a segmenter).
    hmm (bool): Let jieba's HMM join characters its dictionary has no word for.
    """
    for name, value in (("width", width), ("char_rows", char_rows), ("bigram_rows", bigram_rows)):
        if value < 1:
            raise ValueError(f"CharNgramEmbed needs {name} >= 1, got {value}.")
    if segmenter is not None and (word_rows < 1 or position_width < 1):
        raise ValueError(
            f"CharNgramEmbed needs word_rows >= 1 and position_width >= 1 with a segmenter, got {word_rows} and "
            f"{position_width}."
        )
    tables: List[Model[Ints2d, Floats2d]] = [HashEmbed(width, char_rows, column=UNIT, seed=_SEED)]
    concat_width = width
    if bigrams:
        tables.append(_shared_columns(HashEmbed(width, bigram_rows, seed=_SEED + 1), (LEFT_BIGRAM, RIGHT_BIGRAM)))
        concat_width += 2 * width
    if segmenter is not None:
        tables.append(Embed(position_width, N_WORD_POSITIONS, column=WORD_POSITION))
        tables.append(HashEmbed(width, word_rows, column=WORD, seed=_SEED + 2))
        concat_width += position_width + width
    layers: Model[List[Doc], List[Floats2d]] = chain(
        char_ngram_features(segmenter, hmm),
        cast(Model[List[Ints2d], Ragged], list2ragged()),
        with_array(concatenate(*tables)),
        # Its rate is the training's dropout (spaCy sets every Dropout layer's).
        with_array(Dropout(0.0)),
        with_array(Maxout(width, concat_width, nP=3, dropout=0.0, normalize=True)),
        ragged2list(),
    )
    return Model("char_ngram_embed", _embed_forward, init=_embed_init, layers=[layers], dims={"nO": width})


def _embed_init(
    model: Model[List[Doc], List[Floats2d]], X: Optional[List[Doc]] = None, Y: Optional[List[Floats2d]] = None
) -> None:
    model.layers[0].initialize(X=X, Y=Y)


def _embed_forward(
    model: Model[List[Doc], List[Floats2d]], docs: List[Doc], is_train: bool
) -> Tuple[List[Floats2d], Callable]:
    if sum(len(doc) for doc in docs) == 0:
        # No token in the batch (thinc would flatten the empty ids to floats): empty vectors.
        width = model.get_dim("nO")
        return [model.ops.alloc2f(0, width) for _ in docs], lambda d_vectors: []
    return model.layers[0](docs, is_train)


def is_char_ngram_embed(model: Model) -> bool:
    """Whether ``model`` is a ``CharNgramEmbed`` (its only layer is the chain it runs)."""
    return model._func is _embed_forward


def _shared_columns(table: Model[Ints2d, Floats2d], columns: Tuple[int, ...]) -> Model[Ints2d, Floats2d]:
    """One embedding table for several id columns: (n, k) ids -> (n, len(columns) * width)."""
    return Model(
        f"shared_columns({table.name})",
        _shared_forward,
        init=_shared_init,
        layers=[table],
        attrs={"columns": list(columns)},
        dims={"nO": table.get_dim("nO") * len(columns)},
    )


def _shared_init(model: Model[Ints2d, Floats2d], X: Optional[Ints2d] = None, Y: Optional[Floats2d] = None) -> None:
    model.layers[0].initialize()


def _shared_forward(model: Model[Ints2d, Floats2d], ids: Ints2d, is_train: bool) -> Tuple[Floats2d, Callable]:
    columns = model.attrs["columns"]
    n_rows = ids.shape[0]
    stacked = model.ops.as_contig(ids[:, columns].reshape(-1))  # (n * len(columns),), row-major
    vectors, backprop_table = model.layers[0](stacked, is_train)  # (n * len(columns), width)
    width = vectors.shape[1]

    def backprop(d_output: Floats2d) -> Ints2d:
        backprop_table(model.ops.as_contig(cast(Floats2d, d_output.reshape((n_rows * len(columns), width)))))
        return ids

    return cast(Floats2d, vectors.reshape((n_rows, len(columns) * width))), backprop
