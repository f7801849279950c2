"""``spacy-bilstm-crf.OnnxCRFTagger.v1``: the CRF tagger of an exported pipeline.

``spacy-bilstm-crf export`` writes it in place of ``CRFTagger.v1``: the
tok2vec (Thinc's own layers, which need no torch) up to its dense tail (see
:mod:`~spacy_bilstm_crf.models.dense_tail`), then that tail, the encoder and
the emission layer as one ONNX graph
(:mod:`~spacy_bilstm_crf.layers.onnx_scorer`), and the CRF as plain arrays
(:mod:`~spacy_bilstm_crf.layers.crf_numpy`). It has the refs of
``CRFTagger.v1`` that prediction uses (``tok2vec``, the part that runs in
Thinc; ``crf``; and ``scorer`` for the graph); it predicts only.
"""

from typing import Any, Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from ..layers.crf_numpy import NumpyCRFLayer
from ..layers.onnx_scorer import OnnxScorer
from .dense_tail import front_model, split_tok2vec


@registry.architectures("spacy-bilstm-crf.OnnxCRFTagger.v1")
def OnnxCRFTagger_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
    tok2vec_layers_in_graph: int = 0,
) -> Model[List[Doc], List[Floats2d]]:
    """An exported CRF tagger: emission scores over ``nO`` tags from an ONNX
    graph over the vectors of ``tok2vec``, and a numpy CRF on top. Made by
    ``spacy-bilstm-crf export``, which fills in the graph and the CRF.

    tok2vec (Model[List[Doc], List[Floats2d]]): The tok2vec of the torch
        pipeline it was exported from (a CNN tok2vec or a listener).
    nO (Optional[int]): Number of tags; read from the saved graph.
    tok2vec_layers_in_graph (int): How many of the tok2vec's last layers
        (its dense tail, counted in its flattened chain) the graph computes;
        the rest run in Thinc. 0: the graph takes the tok2vec's output.
    """
    if tok2vec_layers_in_graph:
        tok2vec = front_model(split_tok2vec(tok2vec, tok2vec_layers_in_graph))
    scorer = OnnxScorer()
    crf = NumpyCRFLayer()
    return Model(
        "onnx_crf_tagger",
        _forward,
        init=_init,
        layers=[chain(tok2vec, scorer), crf],
        refs={"tok2vec": tok2vec, "scorer": scorer, "crf": crf},
        dims={"nO": nO},
    )


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    return model.layers[0](docs, is_train)


def _init(model: Model, X: Any = None, Y: Any = None) -> None:
    raise ValueError(
        "An exported (ONNX) pipeline cannot be initialized or trained: train the torch pipeline, "
        "then export it again (spacy-bilstm-crf export)."
    )
