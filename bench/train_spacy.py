"""Train one spaCy system (a ``crf_ner`` variant or spaCy ``ner``) on the shared batch plan.

The loop is spaCy's own (``spacy.training.loop.train_while_improving``) in
miniature: ``nlp.update`` with ``sgd=False``, then every component's update
of its weights, then ``optimizer.step_schedules()``; the pipeline comes from
``init_nlp`` and the optimizer, dropout and batcher from the resolved config.

The head learning-rate scale: ``crf_ner`` applies its own ``head_lr_scale``
setting. spaCy ``ner`` has none, so the loop updates its weights with
``spacy_bilstm_crf.optim.finish_update_scaled``: the same scaled update,
applied to every node of ``ner``'s model except the tok2vec it shares the
input with (the listener or the CNN); spaCy itself is not changed.
"""

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, cast

import srsly
from spacy.language import Language
from spacy.schemas import ConfigSchemaTraining
from spacy.training import Example
from spacy.training.initialize import init_nlp
from spacy.util import registry
from spacy.vocab import Vocab
from thinc.api import Model, Optimizer

from spacy_bilstm_crf.optim import finish_update_scaled

from .docbins import bare_doc, load_docs, read_meta
from .evaluate import score_docs
from .recorder import TrainingRecorder
from .rules import warmup_steps
from .specs import Budget
from .systems import batch_plan, build_config, config_warmup, steps_for, system, with_pretraining


def ner_tok2vec(model: Model) -> Model:
    """The tok2vec inside spaCy ``ner``'s model: its ``tok2vec`` ref is
    ``chain(tok2vec, list2array, Linear)``, whose projection is part of the
    fresh head; only the first layer is the shared tok2vec."""
    projected = model.get_ref("tok2vec")
    if not projected.layers:
        raise ValueError(f"unexpected spaCy ner tok2vec {projected.name!r}")
    return projected.layers[0]


def finish_update(nlp: Language, optimizer: Optimizer, head_lr_scale: float) -> None:
    """Every component's weight update; spaCy ``ner``'s head at ``head_lr_scale``."""
    for name, component in nlp.pipeline:
        if not hasattr(component, "finish_update"):
            continue
        if name == "ner" and head_lr_scale != 1.0:
            model = cast(Any, component).model
            finish_update_scaled(model, optimizer, head_lr_scale, unscaled=ner_tok2vec(model))
        else:
            cast(Any, component).finish_update(optimizer)


RAW_TEXT = "train-text.jsonl"  # the training split's texts, in the pretraining folder


def init_pipeline(
    corpus: str,
    name: str,
    corpus_dir: Path,
    transformer: Any,
    plan_steps: int,
    warmup: int,
    head_lr_scale: float,
    seed: int = 0,
    init_tok2vec: Optional[Path] = None,
    base_rate: Optional[float] = None,
    constant_rate: bool = False,
) -> Tuple[Language, Optimizer, float]:
    """An initialized pipeline, its optimizer and dropout, from the system's
    config; ``init_nlp`` seeds the random generators with ``seed``. With
    ``init_tok2vec`` (``pretrain_tok2vec``'s weights), the tok2vec starts from them."""
    config = build_config(
        corpus, name, corpus_dir, transformer, plan_steps, warmup, head_lr_scale, seed, base_rate, constant_rate
    )
    spec = system(corpus, name)
    if spec.pretrain_epochs and init_tok2vec is None:
        raise ValueError(f"{corpus}/{name} starts from a pretrained tok2vec: run pretrain_tok2vec first")
    if init_tok2vec is not None:
        config = with_pretraining(config, init_tok2vec.parent / RAW_TEXT, spec.pretrain_epochs)
        config["paths"]["init_tok2vec"] = str(init_tok2vec)
    nlp = init_nlp(config)
    T = registry.resolve(nlp.config.interpolate()["training"], schema=ConfigSchemaTraining)
    return nlp, T["optimizer"], float(T["dropout"])


def pretrain_tok2vec(corpus: str, name: str, corpus_dir: Path, out_dir: Path, seed: int) -> Path:
    """``spacy pretrain`` of the system's tok2vec on the training split's texts
    (no dev or test text), for its ``pretrain_epochs``; returns the weights file."""
    from spacy.training.pretrain import pretrain

    out_dir.mkdir(parents=True, exist_ok=True)
    raw_text = out_dir / RAW_TEXT
    srsly.write_jsonl(raw_text, ({"text": doc.text} for doc in load_docs(corpus_dir / "train.spacy", Vocab())))
    config = build_config(corpus, name, corpus_dir, None, 1, None, 1.0, seed)
    pretrain(with_pretraining(config, raw_text, system(corpus, name).pretrain_epochs).interpolate(), out_dir)
    return out_dir / "model-last.bin"


def train_step(
    nlp: Language, batch: List[Example], optimizer: Optimizer, dropout: float, head_lr_scale: float
) -> float:
    """One update on ``batch``; returns the summed loss of the components."""
    losses: Dict[str, float] = {}
    # sgd=False: no weights change here; every component's update follows, as in spaCy's loop.
    nlp.update(batch, drop=dropout, sgd=False, losses=losses)  # type: ignore[arg-type]
    finish_update(nlp, optimizer, head_lr_scale)
    optimizer.step_schedules()
    return float(sum(losses.values()))


def evaluate_nlp(nlp: Language, gold: List[Any], batch_size: int, full: bool) -> Dict[str, Any]:
    preds = list(nlp.pipe([bare_doc(doc, nlp.vocab) for doc in gold], batch_size=batch_size))
    return score_docs(gold, preds, full=full)


def schedule(corpus: str, plan: List[List[int]], lengths: List[int], budget: Budget) -> Dict[str, int]:
    """The schedule's steps (the whole plan, up to the cap) and the warm-up
    (the configs', at most 10% of the steps of the minimum budget)."""
    min_steps = steps_for(plan, lengths, budget.min_words)
    return {"total_steps": len(plan), "warmup_steps": warmup_steps(config_warmup(corpus), min_steps)}


def train_spacy(
    corpus: str,
    name: str,
    corpus_dir: Path,
    transformer: Any,
    budget: Budget,
    seed: int,
    head_lr_scale: float,
    model_dir: Path,
    infer_batch_size: int,
    base_rate: Optional[float] = None,
) -> Dict[str, Any]:
    """Train to the budget, keep the best dev checkpoint in ``model_dir/best``,
    and score it on test. Returns the training and test figures of a cell."""
    init_tok2vec, pretrain_seconds = None, None
    if system(corpus, name).pretrain_epochs:
        start = time.perf_counter()
        init_tok2vec = pretrain_tok2vec(corpus, name, corpus_dir, model_dir / "pretrain", seed)
        pretrain_seconds = time.perf_counter() - start
    wall_start = time.perf_counter()
    lengths = read_meta(corpus_dir)["lengths"]["train"]
    plan = batch_plan(corpus, lengths, budget.max_words, seed)
    sched = schedule(corpus, plan, lengths, budget)
    nlp, optimizer, dropout = init_pipeline(
        corpus,
        name,
        corpus_dir,
        transformer,
        sched["total_steps"],
        sched["warmup_steps"],
        head_lr_scale,
        seed,
        init_tok2vec=init_tok2vec,
        base_rate=base_rate,
        constant_rate=budget.constant_rate,
    )
    ner_scale = head_lr_scale if system(corpus, name).kind == "ner" else 1.0
    train_docs = load_docs(corpus_dir / "train.spacy", nlp.vocab)
    dev_docs = load_docs(corpus_dir / "dev.spacy", nlp.vocab)
    if [len(doc) for doc in train_docs] != lengths:
        raise ValueError(f"{corpus_dir}: train.spacy does not match meta.json")
    examples = [Example(bare_doc(doc), doc) for doc in train_docs]
    best_dir = model_dir / "best"
    model_dir.mkdir(parents=True, exist_ok=True)
    recorder = TrainingRecorder(
        budget,
        len(plan),
        evaluate=lambda: evaluate_nlp(nlp, dev_docs, infer_batch_size, full=False),
        save_best=lambda: nlp.to_disk(best_dir),
        name=f"{corpus}/{name}/seed{seed}",
    )
    init_seconds = time.perf_counter() - wall_start
    for batch_ids in plan:
        batch = [examples[i] for i in batch_ids]
        start = time.perf_counter()
        loss = train_step(nlp, batch, optimizer, dropout, ner_scale)
        if recorder.step(sum(len(eg) for eg in batch), time.perf_counter() - start, loss):
            break
    import spacy

    best = spacy.load(best_dir)
    test_docs = load_docs(corpus_dir / "test.spacy", best.vocab)
    start = time.perf_counter()
    test = evaluate_nlp(best, test_docs, infer_batch_size, full=True)
    test["test_seconds"] = time.perf_counter() - start
    return {
        **recorder.result(),
        **test,
        "model_bytes": sum(path.stat().st_size for path in best_dir.rglob("*") if path.is_file()),
        "init_seconds": init_seconds,
        "pretrain_seconds": pretrain_seconds,
        "schedule": sched,
        "config": config_summary(nlp.config),
    }


def config_summary(config: Any) -> Dict[str, Any]:
    training = config["training"]
    learn_rate = training["optimizer"]["learn_rate"]
    component = next(name for name in ("crf_ner", "ner") if name in config["components"])
    model = config["components"][component]["model"]
    return {
        "pipeline": list(config["nlp"]["pipeline"]),
        "learn_rate": dict(learn_rate) if isinstance(learn_rate, dict) else learn_rate,
        "head_lr_scale_setting": config["components"][component].get("head_lr_scale"),
        "dropout": training["dropout"],
        "grad_clip": training["optimizer"]["grad_clip"],
        "L2": training["optimizer"]["L2"],
        "batcher_size": dict(training["batcher"]["size"]),
        "encoder": dict(model["encoder"]) if "encoder" in model else None,
        "tok2vec": dict(model["tok2vec"]),
        "architecture": model["@architectures"],
    }
