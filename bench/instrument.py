"""Time parts of a pipeline (transformer, encoder, CRF) without changing them.

Thinc calls ``model._func(model, X, is_train)`` for every forward pass and
the returned callback for the backward pass; wrapping ``_func`` times both.
The crf_ner component decodes with ``crf_decode``, looked up in its module
at call time; ``patch_crf_decode`` swaps in a timed version for a while.
"""

import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, Optional, cast

from spacy.language import Language
from thinc.api import Model


class Timer:
    """Seconds spent in forward and backward passes of one part."""

    def __init__(self) -> None:
        self.forward = 0.0
        self.backward = 0.0

    @property
    def total(self) -> float:
        return self.forward + self.backward

    def reset(self) -> None:
        self.forward = 0.0
        self.backward = 0.0


def time_layer(model: Model, timer: Timer) -> None:
    """Accumulate the time of ``model``'s forward and backward passes in ``timer``."""
    func = model._func

    def timed_forward(layer: Model, X: Any, is_train: bool) -> Any:
        start = time.perf_counter()
        Y, backprop = func(layer, X, is_train)
        timer.forward += time.perf_counter() - start

        def timed_backprop(dY: Any) -> Any:
            start = time.perf_counter()
            dX = backprop(dY)
            timer.backward += time.perf_counter() - start
            return dX

        return Y, timed_backprop

    model._func = timed_forward


def _model(nlp: Language, name: str) -> Model:
    return cast(Any, nlp.get_pipe(name)).model


def pipeline_timers(nlp: Language, with_tok2vec: bool = False) -> Dict[str, Timer]:
    """Timers on the transformer, and on crf_ner's encoder and CRF, where present.
    With ``with_tok2vec``, pipelines without a transformer get one on the
    tok2vec inside their NER model (or on the tok2vec component); it is left
    out in training, where backward passes of nested layers would overlap."""
    timers: Dict[str, Timer] = {}
    if "transformer" in nlp.pipe_names:
        timers["transformer"] = Timer()
        time_layer(_model(nlp, "transformer"), timers["transformer"])
    elif with_tok2vec:
        for name in ("crf_ner", "ner", "tok2vec"):
            if name in nlp.pipe_names:
                model = _model(nlp, name)
                timers["tok2vec"] = Timer()
                time_layer(model.get_ref("tok2vec") if model.has_ref("tok2vec") else model, timers["tok2vec"])
                break
    if "crf_ner" in nlp.pipe_names:
        model = _model(nlp, "crf_ner")
        for part in ("encoder", "crf"):
            timers[part] = Timer()
            time_layer(model.get_ref(part), timers[part])
    return timers


@contextmanager
def patch_crf_decode(timer: Optional[Timer]) -> Iterator[None]:
    """Time crf_ner's Viterbi decoding (into ``timer.forward``) inside the block."""
    from spacy_bilstm_crf.pipeline import crf_ner

    if timer is None:
        yield
        return
    original: Callable = crf_ner.crf_decode

    def timed_decode(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = original(*args, **kwargs)
        timer.forward += time.perf_counter() - start
        return result

    crf_ner.crf_decode = timed_decode
    try:
        yield
    finally:
        crf_ner.crf_decode = original
