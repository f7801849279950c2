"""The dense tail of a tok2vec: its last layers, after the embedding tables,
which an exported pipeline's ONNX graph computes in place of Thinc.

A CNN tok2vec (``spacy.Tok2Vec.v2`` over ``CharNgramEmbed.v1`` or spaCy's
``MultiHashEmbed``, with ``MaxoutWindowEncoder``) is, flattened, a chain:
feature extraction, embedding lookups, then dense layers (the Maxout that
mixes the embeddings, the window encoder's convolutions). The dense layers
are most of its time and are matrix products, which onnxruntime runs faster
than Thinc, and faster again in int8. :func:`split_tok2vec` cuts the chain
where the dense tail begins: the *front* stays a Thinc model (it gives the
concatenated embeddings per doc), the tail becomes :class:`Step`\\ s, the
description ``export`` turns into torch modules and traces.

The tail is described as it runs on a padded batch (B, T, W) whose rows
are zero past their length, which is how the graph sees it:

- ``maxout``, ``layernorm``: row-wise, as Thinc's;
- ``window``: Thinc's ``expand_window`` (each row with its ``size``
  neighbours either side, zero beyond the row's ends);
- ``residual``: its children's output added to its input;
- ``padded``: Thinc's ``with_array(pad=size)`` over a list: each doc with
  ``size`` zero rows either side, the children run over all rows, the
  padding dropped. Equal to Thinc only when the children's receptive field
  is at most ``size`` (in Thinc a wider one would read the neighbouring docs
  of the batch): a tail that needs more is not split off.

Layers Thinc cannot express that way (anything not listed) end the tail:
the tail is the longest suffix made of them, and a tok2vec without one (a
transformer listener, a Mish encoder) keeps all its layers in Thinc.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Tuple

from thinc.api import Model, chain
from thinc.layers.chain import forward as chain_forward
from thinc.layers.dropout import forward as dropout_forward
from thinc.layers.expand_window import forward as window_forward
from thinc.layers.layernorm import forward as layernorm_forward
from thinc.layers.list2ragged import forward as list2ragged_forward
from thinc.layers.maxout import forward as maxout_forward
from thinc.layers.ragged2list import forward as ragged2list_forward
from thinc.layers.ragged2list import ragged2list
from thinc.layers.residual import forward as residual_forward
from thinc.layers.with_array import forward as with_array_forward
from thinc.types import Floats2d

from .char_embed import is_char_ngram_embed

FRONT_NAME = "tok2vec_front"


@dataclass
class Step:
    """One step of a dense tail, on a padded batch (see the module's docstring)."""

    kind: str  # "maxout", "layernorm", "window", "residual" or "padded"
    layer: Optional[Model] = None  # the Thinc layer with the weights (maxout, layernorm)
    size: int = 0  # window: neighbours either side; padded: zero rows either side
    children: List["Step"] = field(default_factory=list)

    @property
    def receptive_field(self) -> int:
        """How many rows either side the step reads."""
        if self.kind == "window":
            return self.size
        if self.kind == "residual":
            return sum(child.receptive_field for child in self.children)
        return 0  # row-wise, or a padded block, which reads its own doc only


@dataclass
class Tok2VecSplit:
    """A tok2vec cut into a Thinc front and a dense tail of ``n_tail`` flattened layers."""

    front: List[Model]
    front_is_ragged: bool
    tail: List[Step]
    n_tail: int

    @property
    def tail_width(self) -> int:
        """The width of the tail's input: the front's output width."""
        width = _input_width(self.tail)
        if width is None:
            raise ValueError("A dense tail without weights has no input width.")
        return width


def flattened(tok2vec: Model) -> List[Model]:
    """The tok2vec's layers in order, nested chains opened (and the
    ``CharNgramEmbed`` wrapper, whose only child is a chain)."""
    if tok2vec._func is chain_forward:
        return [layer for child in tok2vec.layers for layer in flattened(child)]
    if is_char_ngram_embed(tok2vec):
        return flattened(tok2vec.layers[0])
    return [tok2vec]


def split_tok2vec(tok2vec: Model, n_tail: Optional[int] = None) -> Tok2VecSplit:
    """Cut ``tok2vec`` before its last ``n_tail`` flattened layers (None: the
    longest dense tail it has, possibly none). A ValueError says why those
    layers cannot be a dense tail."""
    layers = flattened(tok2vec)
    ragged_at = _ragged_before(layers)
    if n_tail is None:
        n_tail = 0
        for start in range(len(layers)):
            steps = _sequence_steps(layers[start:], ragged_at[start])
            if steps is not None and _first_weighted(steps) is not None:
                n_tail = len(layers) - start
                break
    if not 0 <= n_tail <= len(layers) - 1:
        raise ValueError(f"a tok2vec of {len(layers)} layers has no dense tail of {n_tail} layers.")
    start = len(layers) - n_tail
    steps = _sequence_steps(layers[start:], ragged_at[start]) if n_tail else []
    if steps is None or (n_tail and _first_weighted(steps) is None):
        names = ", ".join(layer.name for layer in layers[start:])
        raise ValueError(f"the tok2vec's last {n_tail} layers ({names}) are not a dense tail an ONNX graph can run.")
    return Tok2VecSplit(layers[:start], ragged_at[start], steps, n_tail)


def front_model(split: Tok2VecSplit) -> Model[List[Any], List[Floats2d]]:
    """The front of ``split`` as one Thinc model (its layers are the tok2vec's
    own, shared): per doc, the (n_tokens, tail_width) input of the tail."""
    layers = list(split.front)
    if split.front_is_ragged:
        layers.append(ragged2list())
    inner = layers[0] if len(layers) == 1 else chain(*layers)
    return Model(FRONT_NAME, _front_forward, layers=[inner], dims={"nO": split.tail_width})


def _front_forward(model: Model, docs: List[Any], is_train: bool) -> Tuple[List[Floats2d], Callable]:
    if sum(len(doc) for doc in docs) == 0:
        # No token in the batch (thinc would flatten the empty ids to floats).
        width = model.get_dim("nO")
        return [model.ops.alloc2f(0, width) for _ in docs], lambda d_vectors: []
    return model.layers[0](docs, is_train)


def _ragged_before(layers: List[Model]) -> List[bool]:
    """For each index, whether the value entering that layer is Ragged (a
    tok2vec takes a list of docs; list2ragged and ragged2list switch)."""
    ragged = [False]
    for layer in layers:
        if layer._func is list2ragged_forward:
            ragged.append(True)
        elif layer._func is ragged2list_forward:
            ragged.append(False)
        else:
            ragged.append(ragged[-1])
    return ragged


def _sequence_steps(layers: List[Model], ragged: bool) -> Optional[List[Step]]:
    """Steps for layers over a list (or Ragged) of docs; None if one is not a dense layer."""
    steps: List[Step] = []
    for layer in layers:
        if layer._func in (list2ragged_forward, ragged2list_forward):
            ragged = layer._func is list2ragged_forward
            continue
        if layer._func is not with_array_forward:
            return None
        children = _array_steps(layer.layers[0])
        # Over a Ragged, with_array runs its layer on the rows of all docs at once, unpadded.
        pad = 0 if ragged else int(layer.attrs["pad"])
        if children is None or sum(child.receptive_field for child in children) > pad:
            return None
        if children:
            steps.append(Step("padded", size=pad, children=children))
    return steps if not ragged else None  # a tok2vec gives a list


def _array_steps(layer: Model) -> Optional[List[Step]]:
    """Steps for a layer over one array of rows; None if it is not a dense layer."""
    func = layer._func
    if func is chain_forward or func is with_array_forward:
        steps: List[Step] = []
        for child in layer.layers:
            child_steps = _array_steps(child)
            if child_steps is None:
                return None
            steps.extend(child_steps)
        return steps
    if func is maxout_forward:
        return [Step("maxout", layer=layer)]
    if func is layernorm_forward:
        return [Step("layernorm", layer=layer)]
    if func is dropout_forward:
        return []
    if func is window_forward:
        return [Step("window", size=int(layer.attrs["window_size"]))]
    if func is residual_forward:
        children = _array_steps(layer.layers[0])
        return None if children is None else [Step("residual", children=children)]
    return None


def _input_width(steps: List[Step]) -> Optional[int]:
    """The row width entering ``steps``, read from the first layer with weights."""
    for index, step in enumerate(steps):
        if step.layer is not None:
            return int(step.layer.get_dim("nI"))
        if step.kind == "window":
            after = _input_width(steps[index + 1 :])
            return None if after is None else after // (2 * step.size + 1)
        inner = _input_width(step.children)
        if inner is not None:
            return inner
    return None


def _first_weighted(steps: List[Step]) -> Optional[Step]:
    for step in steps:
        if step.kind in ("maxout", "layernorm"):
            return step
        found = _first_weighted(step.children)
        if found is not None:
            return found
    return None
