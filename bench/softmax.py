"""System 5, BERT-softmax: ``AutoModelForTokenClassification`` fine-tuned the
way common scripts (transformers' run_ner) do it, and system 6 for it: the
bare ``AutoModel`` forward.

First-subword labelling: each word's label sits on its first subword, the
other subwords get -100 (ignored). Plain torch loop: AdamW (no decay on
biases and LayerNorm weights), linear warmup then linear decay, gradient
clipping. Learning rate, warmup, decay, clipping and epsilon are taken from
the CoNLL configs' optimizer; batches are the same as the spaCy systems'.
"""

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Tuple

import torch
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from .common import peak_rss_mb, spread, timed_repeats, write_json
from .data import bare_doc, bio_tags, load_docs, short_text
from .evaluate import score_docs
from .infer import latency, throughput_subset
from .systems import batch_plan, checkpoints, optimizer_settings, plan_words

MAX_LENGTH = 512


def tag_inventory(labels: Sequence[str]) -> List[str]:
    return ["O"] + [f"{prefix}-{label}" for label in labels for prefix in ("B", "I")]


def encode(tokenizer: Any, words: Sequence[Sequence[str]]) -> Any:
    return tokenizer(
        [list(w) for w in words],
        is_split_into_words=True,
        truncation=True,
        max_length=MAX_LENGTH,
        padding=True,
        return_tensors="pt",
    )


def first_subword_labels(encoding: Any, tags: Sequence[Sequence[int]]) -> torch.Tensor:
    """Per subword: the word's tag id on its first subword, -100 elsewhere."""
    rows = []
    for row, word_tags in enumerate(tags):
        previous = None
        labels = []
        for word_id in encoding.word_ids(batch_index=row):
            labels.append(word_tags[word_id] if word_id is not None and word_id != previous else -100)
            previous = word_id
        rows.append(labels)
    return torch.tensor(rows, dtype=torch.long)


def predict_tags(model: Any, tokenizer: Any, words: Sequence[Sequence[str]], id2tag: Sequence[str]) -> List[List[str]]:
    """Tag of each word: the argmax at its first subword ("O" if truncated away)."""
    encoding = encode(tokenizer, words)
    with torch.inference_mode():
        logits = model(**encoding).logits  # (B, S, K)
    best = logits.argmax(-1).tolist()
    out: List[List[str]] = []
    for row, sentence in enumerate(words):
        tags = ["O"] * len(sentence)
        previous = None
        for position, word_id in enumerate(encoding.word_ids(batch_index=row)):
            if word_id is not None and word_id != previous:
                tags[word_id] = id2tag[best[row][position]]
            previous = word_id
        out.append(tags)
    return out


def bio_to_spans(tags: Sequence[str]) -> List[Tuple[int, int, str]]:
    """Entities read from IOB2 tags as conlleval and seqeval's default mode do:
    an ``I-X`` that does not continue an X entity opens one."""
    spans: List[Tuple[int, int, str]] = []
    start, label = -1, ""
    for i, tag in enumerate([*tags, "O"]):
        prefix, _, tag_label = tag.partition("-")
        continues = prefix == "I" and start >= 0 and tag_label == label
        if start >= 0 and not continues:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix in ("B", "I") and not continues:
            start, label = i, tag_label
    return spans


def predict_docs(model: Any, tokenizer: Any, docs: Sequence[Doc], id2tag: Sequence[str], batch_size: int) -> List[Doc]:
    model.eval()
    out: List[Doc] = []
    for i in range(0, len(docs), batch_size):
        chunk = docs[i : i + batch_size]
        tags = predict_tags(model, tokenizer, [[t.text for t in doc] for doc in chunk], id2tag)
        for doc, doc_tags in zip(chunk, tags):
            pred = bare_doc(doc)
            pred.ents = [Span(pred, s, e, label=label) for s, e, label in bio_to_spans(doc_tags)]
            out.append(pred)
    return out


def _optimizer(model: Any, settings: Dict[str, Any], total_steps: int, warmup_steps: int) -> Tuple[Any, Any]:
    from transformers import get_linear_schedule_with_warmup

    opt = settings["optimizer"]
    lr = opt["learn_rate"]["initial_rate"]
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {
            "params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)],
            "weight_decay": opt["L2"],
        },
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=lr, betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    schedule = get_linear_schedule_with_warmup(optimizer, warmup_steps, total_steps)
    return optimizer, schedule


def train_softmax(spec: Dict[str, Any]) -> Dict[str, Any]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    wall_start = time.perf_counter()
    torch.manual_seed(spec["seed"])
    corpus_dir = Path(spec["corpus_dir"])
    vocab = Vocab()
    train_docs = load_docs(corpus_dir / "train.spacy", vocab)
    dev_docs = load_docs(corpus_dir / "dev.spacy", vocab)
    labels = sorted({ent.label_ for doc in train_docs for ent in doc.ents})
    id2tag = tag_inventory(labels)
    tag2id = {tag: i for i, tag in enumerate(id2tag)}
    lengths = [len(doc) for doc in train_docs]
    plan = batch_plan(spec["corpus"], lengths, spec["budget_words"], spec["seed"])
    settings = optimizer_settings(spec["corpus"])
    warmup = spec.get("warmup_steps") or settings["optimizer"]["learn_rate"]["warmup_steps"]
    tokenizer = AutoTokenizer.from_pretrained(spec["transformer"], use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(
        spec["transformer"],
        num_labels=len(id2tag),
        id2label=dict(enumerate(id2tag)),
        label2id=tag2id,
    )
    optimizer, schedule = _optimizer(model, settings, len(plan), int(warmup))
    words = [[t.text for t in doc] for doc in train_docs]
    tags = [[tag2id[t] for t in bio_tags(doc)] for doc in train_docs]
    init_seconds = time.perf_counter() - wall_start
    points = checkpoints(plan_words(plan, lengths), spec["checkpoint_fractions"])
    curve: List[Dict[str, Any]] = []
    step_times: List[float] = []
    intervals: List[float] = []
    interval_words, interval_seconds = 0, 0.0
    seen, train_seconds, loss_sum = 0, 0.0, 0.0
    for step, batch in enumerate(plan):
        start = time.perf_counter()
        model.train()
        encoding = encode(tokenizer, [words[i] for i in batch])
        target = first_subword_labels(encoding, [tags[i] for i in batch])
        loss = model(**encoding, labels=target).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings["optimizer"]["grad_clip"])
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        elapsed = time.perf_counter() - start
        n_words = sum(lengths[i] for i in batch)
        seen += n_words
        train_seconds += elapsed
        step_times.append(elapsed)
        interval_words += n_words
        interval_seconds += elapsed
        loss_sum += float(loss.detach())
        if points and seen >= points[0]:
            while points and seen >= points[0]:
                points.pop(0)
            intervals.append(interval_words / interval_seconds)
            interval_words, interval_seconds = 0, 0.0
            eval_start = time.perf_counter()
            dev = score_docs(dev_docs, predict_docs(model, tokenizer, dev_docs, id2tag, spec["batch_size"]), False)
            curve.append(
                {
                    "words_seen": seen,
                    "step": step + 1,
                    "train_seconds": train_seconds,
                    "dev_f1": dev["f1"],
                    "dev_precision": dev["precision"],
                    "dev_recall": dev["recall"],
                    "loss": {"softmax": loss_sum},
                    "eval_seconds": time.perf_counter() - eval_start,
                }
            )
            loss_sum = 0.0
            print(f"softmax: {seen:,} words, {train_seconds:.0f}s, dev F1 {dev['f1']:.4f}", flush=True)
    model.save_pretrained(spec["model_dir"])
    tokenizer.save_pretrained(spec["model_dir"])
    write_json(Path(spec["model_dir"]) / "bench_tags.json", id2tag)
    return {
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
        "peak_rss_train_mb": peak_rss_mb(),
        "config": {
            "learn_rate": settings["optimizer"]["learn_rate"]["initial_rate"],
            "warmup_steps": int(warmup),
            "total_steps": len(plan),
            "weight_decay": settings["optimizer"]["L2"],
            "grad_clip": settings["optimizer"]["grad_clip"],
            "labelling": "first subword",
            "tags": id2tag,
        },
    }


def batched(call: Callable[[Sequence[Sequence[str]]], Any], docs: Sequence[Doc], batch_size: int) -> Callable[[], None]:
    """A call that runs ``call`` over the words of ``docs`` in batches."""
    sentences = [[t.text for t in doc] for doc in docs]

    def run() -> None:
        for i in range(0, len(sentences), batch_size):
            call(sentences[i : i + batch_size])

    return run


def _measure(
    spec: Dict[str, Any], docs: Sequence[Doc], call: Callable[[Sequence[Sequence[str]]], Any]
) -> Dict[str, Any]:
    """One timed pass over the throughput subset, and latency (see infer.measure_spacy)."""
    subset = [docs[i] for i in throughput_subset(docs, spec["throughput_words"])]
    n_words = sum(len(doc) for doc in subset)
    times = timed_repeats(batched(call, subset, spec["batch_size"]), 1, warmup=1)
    text = short_text(spec["corpus"]).split()
    return {
        "process_words_per_s": n_words / times[0],
        "throughput_words": n_words,
        "throughput_docs": len(subset),
        "batch_size": spec["batch_size"],
        "torch_threads": torch.get_num_threads(),
        "latency_ms": latency(lambda: call([text]), spec["latency_repeats"]),
        "latency_text": " ".join(text),
    }


def softmax_predictor(model_dir: str) -> Callable[[Sequence[Sequence[str]]], List[List[str]]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from .common import read_json

    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    model.eval()
    id2tag = read_json(Path(model_dir) / "bench_tags.json")
    return lambda words: predict_tags(model, tokenizer, words, id2tag)


def hf_encoder(path: str) -> Callable[[Sequence[Sequence[str]]], None]:
    """The bare transformer forward, tokenization and batching as in ``predict_tags``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    model = AutoModel.from_pretrained(path)
    model.eval()

    def forward(words: Sequence[Sequence[str]]) -> None:
        encoding = encode(tokenizer, words)
        with torch.inference_mode():
            model(**encoding)

    return forward


def infer_softmax(spec: Dict[str, Any]) -> Dict[str, Any]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    from .common import read_json

    model_dir = spec["model_dir"]
    tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(model_dir)
    model.eval()
    id2tag = read_json(Path(model_dir) / "bench_tags.json")
    gold = load_docs(Path(spec["corpus_dir"]) / "test.spacy", Vocab())
    start = time.perf_counter()
    preds = predict_docs(model, tokenizer, gold, id2tag, spec["batch_size"])
    seconds = time.perf_counter() - start
    result = score_docs(gold, preds)
    result["test_words"] = sum(len(doc) for doc in gold)
    result["test_pass_words_per_s"] = result["test_words"] / seconds
    result.update(_measure(spec, gold, lambda words: predict_tags(model, tokenizer, words, id2tag)))
    result["peak_rss_infer_mb"] = peak_rss_mb()
    return result


def encoder_only_hf(spec: Dict[str, Any]) -> Dict[str, Any]:
    gold = load_docs(Path(spec["corpus_dir"]) / "test.spacy", Vocab())
    result = _measure(spec, gold, hf_encoder(spec["transformer"]))
    result["peak_rss_infer_mb"] = peak_rss_mb()
    return result
