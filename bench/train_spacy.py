"""Train one spaCy system (crf_ner variants or spaCy ner) to a words-seen budget.

The loop is spaCy's own (``spacy.training.loop.train_while_improving``) in
miniature: ``nlp.update`` with ``sgd=False``, then ``finish_update`` of every
component, then ``optimizer.step_schedules()``; the pipeline comes from
``init_nlp`` and the optimizer, dropout and batcher from the resolved config.
Dev F1 is measured at fixed numbers of training words seen.
"""

import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from spacy.schemas import ConfigSchemaTraining
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.util import registry
from thinc.api import fix_random_seed

from .common import log, peak_rss_mb, spread
from .data import bare_doc, load_docs, read_meta
from .evaluate import score_docs
from .instrument import pipeline_timers
from .systems import batch_plan, build_config, checkpoints, plan_words


def evaluate_nlp(nlp: Any, gold: List[Any], batch_size: int) -> Dict[str, Any]:
    preds = list(nlp.pipe([bare_doc(doc, nlp.vocab) for doc in gold], batch_size=batch_size))
    return score_docs(gold, preds, with_seqeval=False)


def train_spacy(spec: Dict[str, Any]) -> Dict[str, Any]:
    """Train, save the pipeline to ``spec['model_dir']`` and return the measurements."""
    corpus, system = spec["corpus"], spec["system"]
    corpus_dir = Path(spec["corpus_dir"])
    wall_start = time.perf_counter()
    fix_random_seed(spec["seed"])
    # Lengths first: the schedule's total steps is the plan's number of batches.
    meta = read_meta(corpus_dir)
    train_lengths = meta["lengths"]["train"]
    plan = batch_plan(corpus, train_lengths, spec["budget_words"], spec["seed"])
    config = build_config(corpus, system, corpus_dir, spec.get("transformer"), len(plan), spec.get("warmup_steps"))
    nlp = init_nlp(config)
    init_seconds = time.perf_counter() - wall_start
    T = registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    optimizer, dropout = T["optimizer"], T["dropout"]
    train_docs = load_docs(corpus_dir / "train.spacy", nlp.vocab)
    dev_docs = load_docs(corpus_dir / "dev.spacy", nlp.vocab)
    if [len(doc) for doc in train_docs] != train_lengths:
        raise ValueError(f"{corpus_dir}: train.spacy does not match meta.json")
    examples = [Example(bare_doc(doc), doc) for doc in train_docs]  # the plan skips empty ones
    timers = pipeline_timers(nlp)
    points = checkpoints(plan_words(plan, train_lengths), spec["checkpoint_fractions"])
    curve: List[Dict[str, Any]] = []
    step_times: List[float] = []
    crf_shares: List[float] = []
    opt_seconds = 0.0
    seen = 0
    train_seconds = 0.0
    interval = {"words": 0, "seconds": 0.0}
    intervals: List[float] = []
    losses: Dict[str, float] = {}
    log(f"{corpus}/{system}: {len(plan)} steps, {plan_words(plan, train_lengths):,} words, checkpoints {points}")
    for step, batch_ids in enumerate(plan):
        batch = [examples[i] for i in batch_ids]
        crf_before = timers["crf"].total if "crf" in timers else 0.0
        start = time.perf_counter()
        # sgd=False: update no weights here; every component's finish_update follows, as in spaCy's loop.
        nlp.update(batch, drop=dropout, sgd=False, losses=losses)  # type: ignore[arg-type]
        opt_start = time.perf_counter()
        for _, proc in nlp.pipeline:
            if hasattr(proc, "finish_update"):
                proc.finish_update(optimizer)
        optimizer.step_schedules()
        end = time.perf_counter()
        opt_seconds += end - opt_start
        step_times.append(end - start)
        if "crf" in timers:
            crf_shares.append((timers["crf"].total - crf_before) / (end - start))
        words = sum(len(eg) for eg in batch)
        seen += words
        train_seconds += end - start
        interval["words"] += words
        interval["seconds"] += end - start
        if points and seen >= points[0]:
            while points and seen >= points[0]:
                points.pop(0)
            intervals.append(interval["words"] / interval["seconds"])
            interval = {"words": 0, "seconds": 0.0}
            eval_start = time.perf_counter()
            saved = {name: (t.forward, t.backward) for name, t in timers.items()}
            dev = evaluate_nlp(nlp, dev_docs, nlp.batch_size)
            for name, (forward, backward) in saved.items():  # evaluation is not training time
                timers[name].forward, timers[name].backward = forward, backward
            curve.append(
                {
                    "words_seen": seen,
                    "step": step + 1,
                    "train_seconds": train_seconds,
                    "dev_f1": dev["f1"],
                    "dev_precision": dev["precision"],
                    "dev_recall": dev["recall"],
                    "loss": {k: float(v) for k, v in losses.items()},
                    "eval_seconds": time.perf_counter() - eval_start,
                }
            )
            log(
                f"{corpus}/{system}: {seen:,} words, {train_seconds:.0f}s training, dev F1 {dev['f1']:.4f}, "
                f"{intervals[-1]:.0f} words/s"
            )
            losses = {}
    Path(spec["model_dir"]).mkdir(parents=True, exist_ok=True)
    nlp.to_disk(spec["model_dir"])
    parts = {name: {"forward": t.forward, "backward": t.backward, "total": t.total} for name, t in timers.items()}
    parts["optimizer"] = {"forward": 0.0, "backward": 0.0, "total": opt_seconds}
    result: Dict[str, Any] = {
        "words_seen": seen,
        "steps": len(plan),
        "train_seconds": train_seconds,
        "train_wall_seconds": time.perf_counter() - wall_start,
        "init_seconds": init_seconds,
        "train_words_per_s": seen / train_seconds if train_seconds else None,
        "train_words_per_s_intervals": spread(intervals),
        "step_seconds": spread(step_times),
        "learning_curve": curve,
        "dev_f1": curve[-1]["dev_f1"] if curve else None,
        "train_time_parts_s": parts,
        "train_time_shares": {name: p["total"] / train_seconds for name, p in parts.items()} if train_seconds else {},
        "peak_rss_train_mb": peak_rss_mb(),
        "config": _config_summary(nlp.config),
    }
    if crf_shares:
        result["crf_share_of_step"] = {
            "aggregate": timers["crf"].total / train_seconds,
            "per_step": {k: v for k, v in spread(crf_shares).items() if k != "values"},
        }
    return result


def _config_summary(config: Any) -> Dict[str, Optional[Any]]:
    training = config["training"]
    learn_rate = training["optimizer"]["learn_rate"]
    component = next(name for name in ("crf_ner", "ner") if name in config["components"])
    return {
        "pipeline": list(config["nlp"]["pipeline"]),
        "learn_rate": dict(learn_rate) if isinstance(learn_rate, dict) else learn_rate,
        "head_lr_scale": config["components"][component].get("head_lr_scale"),
        "dropout": training["dropout"],
        "grad_clip": training["optimizer"]["grad_clip"],
        "L2": training["optimizer"]["L2"],
        "batcher_size": dict(training["batcher"]["size"]),
        "encoder": dict(config["components"][component]["model"].get("encoder", {})) or None,
    }
