"""Inference measurements of spaCy pipelines: test F1, words/s, latency, RSS.

Throughput is ``nlp.pipe`` over pre-tokenized Docs (the corpus tokens, no
tokenizer) at the pipeline's configured ``nlp.batch_size``; latency is
``nlp(text)`` on one short text, tokenizer included.
"""

import copy
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example
from spacy.util import load_model_from_config

from .common import peak_rss_mb, spread, timed_repeats
from .data import bare_doc, load_docs, short_text
from .evaluate import score_docs
from .instrument import Timer, patch_crf_decode, pipeline_timers
from .systems import build_config, is_transformer_corpus


def throughput_subset(docs: Sequence[Doc], words: int) -> List[int]:
    """Indices of the first test docs holding about ``words`` words (0: all)."""
    if words <= 0:
        return list(range(len(docs)))
    picked, total = [], 0
    for i, doc in enumerate(docs):
        if total >= words:
            break
        picked.append(i)
        total += len(doc)
    return picked


def latency(call: Callable[[], Any], repeats: int) -> Dict[str, Any]:
    times = timed_repeats(call, repeats, warmup=3)
    return {k: (v * 1000.0 if isinstance(v, float) else v) for k, v in spread(times).items() if k != "values"}


def spacy_runner(nlp: Language, docs: Sequence[Doc], batch_size: int) -> Callable[[], None]:
    """A call that runs ``nlp.pipe`` over fresh, unannotated copies of ``docs``."""

    def run() -> None:
        # Doc creation is timed too but costs ~1 us a word, well under 0.1% here.
        for _ in nlp.pipe([bare_doc(doc, nlp.vocab) for doc in docs], batch_size=batch_size):
            pass

    return run


def measure_spacy(nlp: Language, spec: Dict[str, Any], with_scores: bool) -> Dict[str, Any]:
    """In this process: test scores (optional), one timed pass over the
    throughput subset, latency, a timed breakdown, and the peak RSS. The
    throughput figures that systems are compared by come from
    ``bench.throughput`` (all systems of a corpus in one process, interleaved)."""
    corpus_dir = Path(spec["corpus_dir"])
    gold = load_docs(corpus_dir / "test.spacy", nlp.vocab)
    batch_size = int(spec.get("batch_size") or nlp.batch_size)
    result: Dict[str, Any] = {"batch_size": batch_size, "torch_threads": _torch_threads()}
    if with_scores:
        start = time.perf_counter()
        preds = list(nlp.pipe([bare_doc(doc, nlp.vocab) for doc in gold], batch_size=batch_size))
        seconds = time.perf_counter() - start
        result.update(score_docs(gold, preds))
        result["test_words"] = sum(len(doc) for doc in gold)
        result["test_pass_words_per_s"] = result["test_words"] / seconds
    subset = [gold[i] for i in throughput_subset(gold, spec["throughput_words"])]
    n_words = sum(len(doc) for doc in subset)
    run = spacy_runner(nlp, subset, batch_size)
    times = timed_repeats(run, 1, warmup=0 if with_scores else 1)
    result["process_words_per_s"] = n_words / times[0]
    result["throughput_words"] = n_words
    result["throughput_docs"] = len(subset)
    text = short_text(spec["corpus"])
    result["latency_ms"] = latency(lambda: nlp(text), spec["latency_repeats"])
    result["latency_text"] = text
    result["infer_time_shares"] = _breakdown(nlp, run)
    result["peak_rss_infer_mb"] = peak_rss_mb()
    return result


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def _breakdown(nlp: Language, run: Callable[[], None]) -> Dict[str, float]:
    """Share of one timed pass spent in the transformer, encoder and Viterbi."""
    timers = pipeline_timers(nlp, with_tok2vec=True)
    timers.pop("crf", None)  # the CRF layer's forward only runs in training
    decode = Timer() if "crf_ner" in nlp.pipe_names else None
    start = time.perf_counter()
    with patch_crf_decode(decode):
        run()
    total = time.perf_counter() - start
    shares = {name: timer.forward / total for name, timer in timers.items()}
    if decode is not None:
        shares["viterbi"] = decode.forward / total
    shares["total_seconds"] = total
    return shares


def infer_spacy(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Load a trained pipeline from ``spec['model_dir']`` and measure it."""
    import spacy

    nlp = spacy.load(spec["model_dir"])
    result = measure_spacy(nlp, spec, with_scores=True)
    result["attn_implementation"] = attn_implementation(nlp)
    return result


def encoder_only_spacy(spec: Dict[str, Any]) -> Dict[str, Any]:
    """The encoder alone, saved to ``spec['model_dir']`` and loaded back like
    the trained systems, then measured like them."""
    import spacy

    encoder_only_nlp(spec).to_disk(spec["model_dir"])
    nlp = spacy.load(spec["model_dir"])
    result = measure_spacy(nlp, spec, with_scores=False)
    result["attn_implementation"] = attn_implementation(nlp)
    return result


def attn_implementation(nlp: Language) -> Optional[str]:
    """The attention implementation of the pipeline's transformer, if it has one."""
    if "transformer" not in nlp.pipe_names:
        return None
    for node in cast(Any, nlp.get_pipe("transformer")).model.walk():
        for shim in node.shims:
            config = getattr(getattr(shim, "_model", None), "config", None)
            if config is not None:
                return getattr(config, "_attn_implementation", None)
    return None


def encoder_only_nlp(spec: Dict[str, Any]) -> Language:
    """The corpus's tok2vec alone, configured as in the systems' configs: the
    transformer component for CoNLL, spaCy's ``tok2vec`` with the same
    HashEmbedCNN for MSRA. Its weights are untrained, which does not change
    its speed."""
    corpus = spec["corpus"]
    config = build_config(corpus, "crf", Path(spec["corpus_dir"]), spec.get("transformer"), 1)
    crf_ner = config["components"].pop("crf_ner")
    if is_transformer_corpus(corpus):
        config["nlp"]["pipeline"] = ["transformer"]
    else:
        config["components"]["tok2vec"] = {
            "factory": "tok2vec",
            "model": copy.deepcopy(dict(crf_ner["model"]["tok2vec"])),
        }
        config["nlp"]["pipeline"] = ["tok2vec"]
    nlp = load_model_from_config(config, auto_fill=True)
    sample = load_docs(Path(spec["corpus_dir"]) / "test.spacy", nlp.vocab)[:10]
    nlp.initialize(lambda: [Example(bare_doc(doc, nlp.vocab), doc) for doc in sample])
    return nlp
