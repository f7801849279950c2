"""Where the time of a pipeline goes, measured through public APIs only.

Training: ``timed_refs`` puts a timing layer (a Thinc ``Model`` whose only
child is the original layer) in place of ``crf_ner``'s ``crf`` and
``encoder`` refs with ``Model.replace_node`` for the duration of a block, and
puts the originals back on exit. The component calls its layers as always;
the wrapper adds the forward time and, through its backprop callback, the
backward time of the layer it wraps. Nothing of the package is patched.

Inference: ``infer_breakdown`` runs the pipeline's components one at a time
on each batch (``component.pipe``) and, for ``crf_ner``, its prediction in
its two public steps, each timed alone: ``component.emission_scores(docs)``
(the model's scores and the constraints) and ``component.decode`` (Viterbi).
The CRF's share of inference is that decoding time over the time of one full
``nlp.pipe`` pass over the same docs.
"""

import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Sequence, Tuple, cast

from spacy.language import Language
from spacy.tokens import Doc
from thinc.api import Model

from .docbins import bare_doc


class Timer:
    """Seconds spent in forward and backward passes of one layer."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward


def timed(layer: Model, timer: Timer) -> Model:
    """A layer that runs ``layer`` and adds its forward and backward seconds to ``timer``."""

    def forward(model: Model, X: Any, is_train: bool) -> Tuple[Any, Callable]:
        start = time.perf_counter()
        Y, backprop = model.layers[0](X, is_train)
        timer.forward += time.perf_counter() - start

        def timed_backprop(dY: Any) -> Any:
            start = time.perf_counter()
            dX = backprop(dY)
            timer.backward += time.perf_counter() - start
            return dX

        return Y, timed_backprop

    return Model(f"timed({layer.name})", forward, layers=[layer], dims={"nO": None})


@contextmanager
def timed_refs(model: Model, names: Sequence[str]) -> Iterator[Dict[str, Timer]]:
    """Time the refs ``names`` of ``model`` (those it has) inside the block."""
    swapped: List[Tuple[Model, Model]] = []
    timers: Dict[str, Timer] = {}
    try:
        for name in names:
            if not model.has_ref(name):
                continue
            layer = model.get_ref(name)
            timers[name] = Timer()
            wrapper = timed(layer, timers[name])
            model.replace_node(layer, wrapper)
            swapped.append((layer, wrapper))
        yield timers
    finally:
        for layer, wrapper in reversed(swapped):
            model.replace_node(wrapper, layer)


def _model(nlp: Language, name: str) -> Model:
    return cast(Any, nlp.get_pipe(name)).model


@contextmanager
def training_timers(nlp: Language) -> Iterator[Dict[str, Timer]]:
    """Timers on ``crf_ner``'s CRF and encoder during training (empty for other pipelines)."""
    if "crf_ner" not in nlp.pipe_names:
        yield {}
        return
    with timed_refs(_model(nlp, "crf_ner"), ("crf", "encoder")) as timers:
        yield timers


def infer_breakdown(nlp: Language, docs: Sequence[Doc], batch_size: int) -> Dict[str, float]:
    """Seconds per component over ``docs`` in batches, and for ``crf_ner`` its
    emission scores, its Viterbi decoding and setting the entities, each timed alone."""
    from spacy_bilstm_crf.pipeline.crf_ner import CRFPrediction

    seconds: Dict[str, float] = {}
    for i in range(0, len(docs), batch_size):
        batch = [bare_doc(doc, nlp.vocab) for doc in docs[i : i + batch_size]]
        for name, component in nlp.pipeline:
            if name == "crf_ner":
                comp = cast(Any, component)
                start = time.perf_counter()
                emissions = comp.emission_scores(batch)
                middle = time.perf_counter()
                tag_ids = comp.decode(emissions)
                end = time.perf_counter()
                comp.set_annotations(batch, CRFPrediction(tag_ids, [[] for _ in batch]))
                done = time.perf_counter()
                for part, value in (("emissions", middle - start), ("viterbi", end - middle), ("set_ents", done - end)):
                    seconds[f"crf_ner.{part}"] = seconds.get(f"crf_ner.{part}", 0.0) + value
                seconds[name] = seconds.get(name, 0.0) + done - start
                continue
            start = time.perf_counter()
            batch = list(cast(Any, component).pipe(batch, batch_size=batch_size))
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
    return seconds
