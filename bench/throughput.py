"""Inference throughput of all systems of a corpus, interleaved in one process.

Every trained pipeline and the encoder alone are loaded together; each round
runs each of them once over the same test sentences, in an order rotated
from round to round. A slow spell of the machine then hits all systems of a
round alike, and the ratio to the encoder alone is taken within each round.
"""

import time
from pathlib import Path
from typing import Any, Callable, Dict, List

from .common import spread
from .data import load_docs
from .infer import encoder_only_nlp, spacy_runner, throughput_subset
from .systems import CEILING


def _runner(name: str, entry: Dict[str, Any], spec: Dict[str, Any], docs: List[Any]) -> Callable[[], None]:
    import spacy

    from .softmax import batched, hf_encoder, softmax_predictor

    kind = entry["kind"]
    if kind == "spacy":
        nlp = spacy.load(entry["model_dir"])
        return spacy_runner(nlp, docs, spec["batch_size"])
    if kind == "encoder_spacy":
        return spacy_runner(encoder_only_nlp(spec), docs, spec["batch_size"])
    if kind == "softmax":
        return batched(softmax_predictor(entry["model_dir"]), docs, spec["batch_size"])
    if kind == "encoder_hf":
        return batched(hf_encoder(spec["transformer"]), docs, spec["batch_size"])
    raise ValueError(f"unknown kind {kind!r} for {name}")


def interleaved_throughput(spec: Dict[str, Any]) -> Dict[str, Any]:
    from spacy.vocab import Vocab

    gold = load_docs(Path(spec["corpus_dir"]) / "test.spacy", Vocab())
    docs = [gold[i] for i in throughput_subset(gold, spec["throughput_words"])]
    n_words = sum(len(doc) for doc in docs)
    runners = {name: _runner(name, entry, spec, docs) for name, entry in spec["systems"].items()}
    for run in runners.values():  # warm-up
        run()
    names = list(runners)
    rates: Dict[str, List[float]] = {name: [] for name in names}
    ratios: Dict[str, List[float]] = {name: [] for name in names}
    for round_ in range(spec["rounds"]):
        shift = round_ % len(names)
        this_round: Dict[str, float] = {}
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runners[name]()
            this_round[name] = n_words / (time.perf_counter() - start)
        for name in names:
            rates[name].append(this_round[name])
            ceiling = name if name.endswith("encoder_only") else CEILING.get(name, "encoder_only")
            if ceiling in this_round:
                ratios[name].append(this_round[name] / this_round[ceiling])
    return {
        "words": n_words,
        "docs": len(docs),
        "rounds": spec["rounds"],
        "batch_size": spec["batch_size"],
        "systems": {
            name: {
                "infer_words_per_s": spread(rates[name])["median"],
                "infer_words_per_s_spread": spread(rates[name]),
                "infer_over_encoder_spread": spread(ratios[name]),
            }
            for name in names
        },
    }
