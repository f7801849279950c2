"""``spacy-bilstm-crf.CRFTagger.v1``: tok2vec -> encoder -> emissions -> CRF."""

from typing import Any, Callable, List, Optional, Tuple

from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Linear, Model, chain, with_array
from thinc.types import Floats1d, Floats2d

from ..layers.crf import CRF, CRFInput


@registry.architectures("spacy-bilstm-crf.CRFTagger.v1")
def CRFTagger_v1(
    tok2vec: Model[List[Doc], List[Floats2d]],
    encoder: Model[List[Floats2d], List[Floats2d]],
    nO: Optional[int] = None,
) -> Model[List[Doc], List[Floats2d]]:
    """A CRF tagger: per-token emission scores over ``nO`` tags, from a linear
    layer over ``encoder(tok2vec(docs))``, and a linear-chain CRF on top.

    The model's output is the emission scores; the CRF layer (ref ``"crf"``,
    see ``get_crf``) turns them into a loss or a decoded tag sequence.

    tok2vec (Model[List[Doc], List[Floats2d]]): Token vectors: a transformer
        listener, an inline transformer or a CNN tok2vec.
    encoder (Model[List[Floats2d], List[Floats2d]]): Context encoder:
        BiLSTMEncoder.v1, IDCNNEncoder.v2 (or .v1) or NoEncoder.v1.
    nO (Optional[int]): Number of tags; inferred when the component is initialized.
    """
    emission = Linear(nO=nO)
    scorer: Model[List[Doc], List[Floats2d]] = chain(tok2vec, encoder, with_array(emission))
    crf = CRF(nO=nO)
    return Model(
        "crf_tagger",
        _forward,
        init=_init,
        layers=[scorer, crf],
        refs={"tok2vec": tok2vec, "encoder": encoder, "emission": emission, "crf": crf},
        dims={"nO": nO},
    )


def get_crf(model: Model[List[Doc], List[Floats2d]]) -> Model[CRFInput, Floats1d]:
    """The CRF layer of a CRF tagger."""
    return model.get_ref("crf")


def _forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    return model.layers[0](docs, is_train)


def _init(model: Model, X: Optional[List[Doc]] = None, Y: Optional[List[Any]] = None) -> None:
    if Y is not None and len(Y) and not model.has_dim("nO"):
        model.set_dim("nO", Y[0].shape[1])
    if model.has_dim("nO"):
        n_tags = model.get_dim("nO")
        for name in ("emission", "crf"):
            if not model.get_ref(name).has_dim("nO"):
                model.get_ref(name).set_dim("nO", n_tags)
    model.layers[0].initialize(X=X)
    model.get_ref("crf").initialize()
