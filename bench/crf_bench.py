"""The CRF alone against sequence length and tag count, and the heads alone.

CRF: ``ConditionalRandomField`` with BILUO constraints, one sequence of T
tokens (batch 1), forward (NLL) + backward, and Viterbi ``decode``; a
least-squares line ``seconds = a + b * T`` per tag count over the fastest of
the repeated runs (the least disturbed by the rest of the machine), with its
R^2, and the log-log slope (1.0 means linear).

Heads: the BiLSTM and IDCNN encoder modules as the configs build them, alone, on batches
shaped like the test set's sentences and the tok2vec's width; inference
forward and training forward + backward, per word.
"""

from functools import partial
from typing import Any, Dict, List, Sequence, Tuple

import numpy
import torch

from .common import spread, timed_repeats


def biluo_crf(n_labels: int) -> Any:
    from spacy_bilstm_crf.modules.crf import ConditionalRandomField
    from spacy_bilstm_crf.tag_scheme import allowed_transitions, make_tags

    tags = make_tags([f"L{i}" for i in range(n_labels)], "BILUO")
    crf = ConditionalRandomField(len(tags))
    transitions, start, end = allowed_transitions(tags, "BILUO")
    crf.set_constraints(torch.from_numpy(transitions), torch.from_numpy(start), torch.from_numpy(end))
    return crf


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


def crf_scaling(lengths: Sequence[int], label_counts: Sequence[int], repeats: int) -> Dict[str, Any]:
    torch.manual_seed(0)
    rows: List[Dict[str, Any]] = []
    fits: Dict[str, Dict[str, Any]] = {}
    for n_labels in label_counts:
        crf = biluo_crf(n_labels)
        k = crf.num_tags
        per_op: Dict[str, List[float]] = {"nll_backward": [], "viterbi": []}
        for length in lengths:
            emissions = torch.randn(1, length, k)
            mask = torch.ones(1, length, dtype=torch.bool)
            tags, _ = crf.decode(emissions, mask)  # a valid gold path
            leaf = emissions.clone().requires_grad_(True)
            ops = {
                "nll_backward": partial(_nll_backward, crf, leaf, mask, tags),
                "viterbi": partial(_viterbi, crf, emissions, mask),
            }
            for op, func in ops.items():
                times = timed_repeats(func, repeats, warmup=1)
                stats = spread(times)
                per_op[op].append(stats["min"])  # the fit uses the fastest run, as timeit advises
                rows.append(
                    {
                        "op": op,
                        "labels": n_labels,
                        "tags": k,
                        "length": length,
                        "seconds": stats,
                        "us_per_token": stats["median"] / length * 1e6,
                    }
                )
        for op, medians in per_op.items():
            fits[f"{op}/tags={k}"] = {"op": op, "labels": n_labels, "tags": k, **linear_fit(lengths, medians)}
    linear = all(fit["r2"] >= 0.99 and 0.85 <= fit["loglog_slope"] <= 1.15 for fit in fits.values())
    return {
        "lengths": list(lengths),
        "label_counts": list(label_counts),
        "batch_size": 1,
        "repeats": repeats,
        "rows": rows,
        "fits": fits,
        "linear": linear,
        "linear_criterion": "every fit has R^2 >= 0.99 and a log-log slope in [0.85, 1.15]",
    }


def _nll_backward(crf: Any, emissions: torch.Tensor, mask: torch.Tensor, tags: torch.Tensor) -> None:
    emissions.grad = None
    crf.zero_grad()
    crf(emissions, mask, tags).sum().backward()


def _viterbi(crf: Any, emissions: torch.Tensor, mask: torch.Tensor) -> None:
    crf.decode(emissions, mask)


def _head_infer(module: torch.nn.Module, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> None:
    module.eval()
    with torch.inference_mode():
        for x, lengths in batches:
            module(x, lengths)


def _head_train(module: torch.nn.Module, batches: Sequence[Tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Forward and backward, down to the input (the tok2vec's output, in a pipeline)."""
    module.train()
    for x, lengths in batches:
        module.zero_grad()
        leaf = x.detach().requires_grad_(True)
        module(leaf, lengths).sum().backward()


def config_heads(corpus: str, width: int) -> Dict[str, Tuple[torch.nn.Module, Dict[str, Any]]]:
    """The BiLSTM and IDCNN torch modules exactly as the corpus's configs build
    them (their ``[components.crf_ner.model.encoder]`` blocks), for input width
    ``width``, with those settings."""
    from spacy.util import load_config, registry

    from spacy_bilstm_crf.layers.lazy_torch import torch_module

    from .systems import config_path

    heads = {}
    for name, system in (("bilstm", "bilstm_crf"), ("idcnn", "idcnn_crf")):
        block = load_config(config_path(corpus, system), interpolate=False)["components"]["crf_ner"]["model"]["encoder"]
        layer = registry.resolve({"encoder": block})["encoder"]
        layer.initialize(X=[numpy.zeros((3, width), dtype="float32")])
        heads[name] = (torch_module(layer), dict(block))
    return heads


def head_speed(
    corpus: str, width: int, sentence_lengths: Sequence[int], batch_size: int, repeats: int
) -> Dict[str, Any]:
    """Words/s of each head alone over ``sentence_lengths`` in batches."""
    torch.manual_seed(0)
    batches = []
    for i in range(0, len(sentence_lengths), batch_size):
        lengths = torch.tensor(sentence_lengths[i : i + batch_size], dtype=torch.long)
        batches.append((torch.randn(len(lengths), int(lengths.max()), width), lengths))
    n_words = int(sum(sentence_lengths))
    result: Dict[str, Any] = {
        "width": width,
        "batch_size": batch_size,
        "words": n_words,
        "sentences": len(sentence_lengths),
    }
    for name, (module, settings) in config_heads(corpus, width).items():
        funcs = {"infer": partial(_head_infer, module, batches), "train": partial(_head_train, module, batches)}
        entry: Dict[str, Any] = {"parameters": sum(p.numel() for p in module.parameters()), "config": settings}
        for mode, func in funcs.items():
            times = timed_repeats(func, repeats, warmup=1)
            entry[f"{mode}_words_per_s"] = spread([n_words / t for t in times])
        result[name] = entry
    for mode in ("infer", "train"):
        result[f"idcnn_speedup_{mode}"] = (
            result["idcnn"][f"{mode}_words_per_s"]["median"] / result["bilstm"][f"{mode}_words_per_s"]["median"]
        )
    return result


def run_crf_bench(spec: Dict[str, Any]) -> Dict[str, Any]:
    from spacy.vocab import Vocab

    from .data import load_docs

    result: Dict[str, Any] = {"crf": crf_scaling(spec["lengths"], spec["label_counts"], spec["repeats"])}
    heads: Dict[str, Any] = {}
    for corpus, info in spec["heads"].items():
        docs = load_docs(info["test_path"], Vocab())
        lengths: List[int] = []
        for doc in docs:
            if sum(lengths) >= info["max_words"]:
                break
            if len(doc):
                lengths.append(len(doc))
        heads[corpus] = head_speed(corpus, info["width"], lengths, info["batch_size"], spec["repeats"])
    result["heads"] = heads
    result["torch_threads"] = torch.get_num_threads()
    return result
