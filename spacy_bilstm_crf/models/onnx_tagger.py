"""``spacy-bilstm-crf.OnnxCRFTagger.v1``: the CRF tagger of an exported pipeline.

``spacy-bilstm-crf export`` writes it in place of ``CRFTagger.v1``: the same
tok2vec (Thinc's own layers, which need no torch), then the encoder and the
emission layer as one ONNX graph (:mod:`~spacy_bilstm_crf.layers.onnx_scorer`)
and the CRF as plain arrays (:mod:`~spacy_bilstm_crf.layers.crf_numpy`). It
has the refs of ``CRFTagger.v1`` that prediction uses (``tok2vec``,
``crf``, and ``scorer`` for the graph); it predicts only.
"""

from typing import Any, Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model, chain
from thinc.types import Floats2d

from ..layers.crf_numpy import NumpyCRFLayer
from ..layers.onnx_scorer import OnnxScorer


@registry.architectures("spacy-bilstm-crf.OnnxCRFTagger.v1")
def OnnxCRFTagger_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """An exported CRF tagger: emission scores over ``nO`` tags from an ONNX
    graph over ``tok2vec(docs)``, and a numpy CRF on top. Made by
    ``spacy-bilstm-crf export``, which fills in the graph and the CRF.

    tok2vec (Model[List[Doc], List[Floats2d]]): The token vectors of the
        torch pipeline it was exported from (a CNN tok2vec or a listener).
    nO (Optional[int]): Number of tags; read from the saved graph.
    """
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
