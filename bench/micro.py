"""Microbenchmarks through the package's Thinc layers: the CRF alone against
sequence length and tag count, and the encoders alone.

CRF: ``spacy_bilstm_crf.layers.crf.CRF`` over one sequence of T tokens
(batch 1): the NLL forward + backward (``begin_update`` and its backprop)
and Viterbi (``crf_decode``), unconstrained (constraints add scores, not
work); a least-squares line ``seconds = a + b * T`` per tag count over the
fastest of the repeated runs, with its R^2, and the log-log slope (1.0:
linear).

Encoders: each system's encoder layer as its config builds it, alone, on
batches shaped like the test sentences and the tok2vec's width; inference
(``predict``) and training (``begin_update`` + backprop), per token.
"""

from functools import partial
from typing import Any, Dict, List, Sequence

import numpy

from .common import spread, timed_repeats

BILUO_TAGS_PER_LABEL = 4


def linear_fit(lengths: Sequence[int], seconds: Sequence[float]) -> Dict[str, float]:
    x = numpy.asarray(lengths, dtype="float64")
    y = numpy.asarray(seconds, dtype="float64")
    slope, intercept = numpy.polyfit(x, y, 1)
    fitted = intercept + slope * x
    ss_res = float(((y - fitted) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    loglog = numpy.polyfit(numpy.log(x), numpy.log(numpy.maximum(y, 1e-12)), 1)[0]
    return {
        "seconds_per_token": float(slope),
        "intercept_seconds": float(intercept),
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0,
        "loglog_slope": float(loglog),
    }


def _crf_layer(n_tags: int) -> Any:
    from spacy_bilstm_crf.layers.crf import CRF

    layer = CRF(nO=n_tags)
    layer.initialize()
    return layer


def _nll_backward(layer: Any, emissions: List[Any], tags: List[Any]) -> None:
    nll, backprop = layer.begin_update((emissions, tags, None))
    backprop(layer.ops.xp.ones(len(nll), dtype="f"))


def _viterbi(layer: Any, emissions: List[Any]) -> None:
    from spacy_bilstm_crf.layers.crf import crf_decode

    crf_decode(layer, emissions)


def crf_scaling(lengths: Sequence[int], label_counts: Sequence[int], repeats: int) -> Dict[str, Any]:
    rng = numpy.random.default_rng(0)
    rows: List[Dict[str, Any]] = []
    fits: Dict[str, Dict[str, Any]] = {}
    for n_labels in label_counts:
        n_tags = 1 + BILUO_TAGS_PER_LABEL * n_labels
        layer = _crf_layer(n_tags)
        fastest: Dict[str, List[float]] = {"nll_backward": [], "viterbi": []}
        for length in lengths:
            # on the layer's device (numpy on CPU, cupy on GPU), as the pipe's batches are
            emissions = [layer.ops.asarray2f(rng.standard_normal((length, n_tags)).astype("float32"))]
            tags = [layer.ops.asarray1i(rng.integers(0, n_tags, size=length))]
            ops = {
                "nll_backward": partial(_nll_backward, layer, emissions, tags),
                "viterbi": partial(_viterbi, layer, emissions),
            }
            for op, func in ops.items():
                stats = spread(timed_repeats(func, repeats, warmup=1))
                fastest[op].append(stats["min"])  # the fit uses the fastest run, as timeit advises
                rows.append(
                    {
                        "op": op,
                        "labels": n_labels,
                        "tags": n_tags,
                        "length": length,
                        "seconds": stats,
                        "us_per_token": stats["median"] / length * 1e6,
                    }
                )
        for op, seconds in fastest.items():
            fits[f"{op}/tags={n_tags}"] = {"op": op, "labels": n_labels, "tags": n_tags, **linear_fit(lengths, seconds)}
    return {
        "lengths": list(lengths),
        "label_counts": list(label_counts),
        "batch_size": 1,
        "repeats": repeats,
        "rows": rows,
        "fits": fits,
        "worst_slope_gap": max(abs(f["loglog_slope"] - 1.0) for f in fits.values()),
    }


def _encoder_infer(layer: Any, batches: Sequence[List[Any]]) -> None:
    for X in batches:
        layer.predict(X)


def _encoder_train(layer: Any, batches: Sequence[List[Any]]) -> None:
    for X in batches:
        Y, backprop = layer.begin_update(X)
        backprop([layer.ops.alloc2f(*y.shape) + 1.0 for y in Y])


def encoder_speed(
    blocks: Dict[str, Dict[str, Any]], width: int, sentence_lengths: Sequence[int], batch_size: int, repeats: int
) -> Dict[str, Any]:
    """Tokens/s of each encoder block alone over ``sentence_lengths`` in batches."""
    from spacy.util import registry
    from thinc.api import Config, get_current_ops

    from .systems import count_parameters

    ops = get_current_ops()  # numpy on CPU, cupy on GPU: the layers' inputs live where the layers do
    rng = numpy.random.default_rng(0)
    batches = [
        [
            ops.xp.asarray(rng.standard_normal((n, width)).astype("float32"))
            for n in sentence_lengths[i : i + batch_size]
        ]
        for i in range(0, len(sentence_lengths), batch_size)
    ]
    n_tokens = int(sum(sentence_lengths))
    result: Dict[str, Any] = {"width": width, "batch_size": batch_size, "tokens": n_tokens, "encoders": {}}
    for name, block in blocks.items():
        layer = registry.resolve({"encoder": block})["encoder"]
        layer.initialize(X=batches[0])
        entry: Dict[str, Any] = {
            "block": block,
            "parameters": count_parameters(Config({"encoder": block}).to_str(), width),
        }
        for mode, func in (("infer", _encoder_infer), ("train", _encoder_train)):
            times = timed_repeats(partial(func, layer, batches), repeats, warmup=1)
            entry[f"{mode}_tokens_per_s"] = spread([n_tokens / t for t in times])
        result["encoders"][name] = entry
    return result
