"""BERT-softmax: ``AutoModelForTokenClassification`` fine-tuned on the same
batches as the spaCy systems, held to the same rules.

First-subword labelling: each word's IOB2 tag sits on its first subword, the
other subwords are ignored (-100); predicted tags are each word's argmax,
read leniently as seqeval reads them, and the test set is scored a second
time with the same checkpoint decoded to valid IOB2 sequences only
(``decode_tags``: the constrained-softmax row). The optimizer matches Thinc's Adam as the configs set it:
AdamW with the configs' betas, epsilon and decoupled weight decay (L2) on
every parameter, the configs' schedule step for step (``learn_rates``), and
Thinc's clipping (each parameter tensor to norm ``grad_clip``). The fresh
classifier is a parameter group at ``head_lr_scale`` times the rate.
"""

import time
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy
import torch
from spacy.tokens import Doc, Span
from spacy.vocab import Vocab

from spacy_bilstm_crf.runtime.numpy_crf import NumpyCRF
from spacy_bilstm_crf.tag_scheme import allowed_transitions

from .common import read_json, write_json
from .docbins import bare_doc, doc_spans, load_docs
from .evaluate import score_docs
from .recorder import TrainingRecorder
from .specs import Budget
from .systems import batch_plan, learn_rates, optimizer_settings, with_base_rate
from .tags import bio_tags, read_bio
from .train_spacy import schedule

MAX_LENGTH = 512
TAGS_FILE = "bench_tags.json"
TRUNCATED_SCORE = -1e4  # the log-probability of a tag other than "O" for a word truncated away


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


def word_scores(model: Any, tokenizer: Any, words: Sequence[Sequence[str]]) -> List[numpy.ndarray]:
    """Per sentence, (words, K) log-probabilities of the tags at each word's
    first subword; a word truncated away scores "O" (tag 0) certain."""
    encoding = encode(tokenizer, words).to(model.device)
    with torch.inference_mode():
        log_probs = torch.log_softmax(model(**encoding).logits.float(), dim=-1).cpu().numpy()  # (B, S, K)
    out: List[numpy.ndarray] = []
    for row, sentence in enumerate(words):
        scores = numpy.full((len(sentence), log_probs.shape[-1]), TRUNCATED_SCORE, dtype="float32")  # (words, K)
        scores[:, 0] = 0.0
        previous = None
        for position, word_id in enumerate(encoding.word_ids(batch_index=row)):
            if word_id is not None and word_id != previous:
                scores[word_id] = log_probs[row, position]
            previous = word_id
        out.append(scores)
    return out


def decode_tags(scores: Sequence[numpy.ndarray], id2tag: Sequence[str], decoding: str) -> List[List[str]]:
    """Tags of each sentence from its (words, K) scores: ``"argmax"``, each
    word's most probable tag (read leniently afterwards, as seqeval does), or
    ``"constrained"``, the most probable *valid* IOB2 sequence: Viterbi over
    the allowed transitions with every transition scored 0 (the CRF heads'
    decoding constraints without their learned transitions)."""
    if decoding == "argmax":
        return [[id2tag[int(tag)] for tag in sentence.argmax(axis=-1)] for sentence in scores]
    if decoding != "constrained":
        raise ValueError(f"unknown decoding {decoding!r}: expected 'argmax' or 'constrained'")
    num_tags = len(id2tag)
    crf = _valid_sequences(tuple(id2tag))
    length = max((len(sentence) for sentence in scores), default=0)
    emissions = numpy.zeros((len(scores), length, num_tags), dtype="float32")  # (B, T, K)
    mask = numpy.zeros((len(scores), length), dtype=bool)  # (B, T)
    for row, sentence in enumerate(scores):
        emissions[row, : len(sentence)] = sentence
        mask[row, : len(sentence)] = True
    best, _ = crf.decode(emissions, mask)  # (B, T)
    return [[id2tag[int(tag)] for tag in best[row, : len(sentence)]] for row, sentence in enumerate(scores)]


@lru_cache(maxsize=8)
def _valid_sequences(id2tag: Tuple[str, ...]) -> NumpyCRF:
    """A CRF that scores every transition 0 and allows only valid IOB2 ones (built once per tag set)."""
    transitions, start, end = allowed_transitions(list(id2tag), "BIO")
    zeros = numpy.zeros((len(id2tag), len(id2tag)), dtype="float32")
    return NumpyCRF(zeros, zeros[0], zeros[0], transitions, start, end)


def predict_tags(
    model: Any, tokenizer: Any, words: Sequence[Sequence[str]], id2tag: Sequence[str], decoding: str = "argmax"
) -> List[List[str]]:
    """Tag of each word, decoded from its first subword's scores (``decode_tags``)."""
    return decode_tags(word_scores(model, tokenizer, words), id2tag, decoding)


def predict_docs(
    model: Any,
    tokenizer: Any,
    docs: Sequence[Doc],
    id2tag: Sequence[str],
    batch_size: int,
    decodings: Sequence[str] = ("argmax",),
) -> Dict[str, List[Doc]]:
    """The docs with predicted entities, per decoding (one forward pass for all)."""
    model.eval()
    out: Dict[str, List[Doc]] = {decoding: [] for decoding in decodings}
    for i in range(0, len(docs), batch_size):
        chunk = docs[i : i + batch_size]
        scores = word_scores(model, tokenizer, [[t.text for t in doc] for doc in chunk])
        for decoding in decodings:
            for doc, doc_tags in zip(chunk, decode_tags(scores, id2tag, decoding)):
                pred = bare_doc(doc)
                pred.ents = [Span(pred, s, e, label=label) for s, e, label in read_bio(doc_tags)]
                out[decoding].append(pred)
    return out


def clip_per_tensor(parameters: Sequence[torch.nn.Parameter], max_norm: float) -> None:
    """Thinc's gradient clipping: each tensor's gradient to norm ``max_norm``."""
    for p in parameters:
        if p.grad is not None:
            torch.nn.utils.clip_grad_norm_([p], max_norm)


def build_optimizer(
    model: Any, corpus: str, rates: Sequence[float], head_lr_scale: float
) -> Tuple[torch.optim.Optimizer, Any]:
    """AdamW as Thinc's Adam is configured, the classifier as a group at
    ``head_lr_scale`` times the rate, and the configs' schedule."""
    opt = optimizer_settings(corpus)["optimizer"]
    base = max(rates) if rates and max(rates) > 0 else 1.0
    head = list(model.classifier.parameters())
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    groups = [
        {"params": body, "lr": base},
        {"params": head, "lr": base * head_lr_scale},
    ]
    optimizer = torch.optim.AdamW(groups, betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"], weight_decay=opt["L2"])
    factors = [r / base for r in rates]
    last = factors[-1] if factors else 1.0
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: factors[step] if step < len(factors) else last
    )
    return optimizer, scheduler


def load_softmax(model_dir: Path) -> Tuple[Any, Any, List[str]]:
    from transformers import AutoModelForTokenClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    model = AutoModelForTokenClassification.from_pretrained(str(model_dir))
    model.eval()
    return model, tokenizer, read_json(model_dir / TAGS_FILE)


class SoftmaxTrainer:
    """A token classifier, its optimizer and its training data, one step at a time."""

    def __init__(
        self,
        corpus: str,
        corpus_dir: Path,
        transformer: str,
        total_steps: int,
        warmup: int,
        scale: float,
        base_rate: Optional[float] = None,
        device: str = "cpu",
        constant_rate: bool = False,
    ):
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        vocab = Vocab()
        self.docs = load_docs(corpus_dir / "train.spacy", vocab)
        self.dev_docs = load_docs(corpus_dir / "dev.spacy", vocab)
        labels = sorted({ent.label_ for doc in self.docs for ent in doc.ents})
        self.id2tag = tag_inventory(labels)
        tag2id = {tag: i for i, tag in enumerate(self.id2tag)}
        self.tokenizer = AutoTokenizer.from_pretrained(transformer, use_fast=True)
        self.model = AutoModelForTokenClassification.from_pretrained(
            transformer, num_labels=len(self.id2tag), id2label=dict(enumerate(self.id2tag)), label2id=tag2id
        ).to(device)
        self.grad_clip = float(optimizer_settings(corpus)["optimizer"]["grad_clip"])
        self.optimizer, self.scheduler = build_optimizer(
            self.model, corpus, learn_rates(corpus, total_steps, warmup, base_rate, constant_rate), scale
        )
        self.words = [[t.text for t in doc] for doc in self.docs]
        self.tags = [[tag2id[t] for t in bio_tags(len(doc), doc_spans(doc))] for doc in self.docs]

    def step(self, batch: Sequence[int]) -> float:
        self.model.train()
        encoding = encode(self.tokenizer, [self.words[i] for i in batch])
        target = first_subword_labels(encoding, [self.tags[i] for i in batch]).to(self.model.device)
        encoding = encoding.to(self.model.device)
        loss = self.model(**encoding, labels=target).loss
        loss.backward()
        clip_per_tensor(list(self.model.parameters()), self.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad()
        return float(loss.detach())

    def save(self, path: Path) -> None:
        self.model.save_pretrained(str(path))
        self.tokenizer.save_pretrained(str(path))
        write_json(path / TAGS_FILE, self.id2tag)

    def predictor(self) -> Callable[[Sequence[Sequence[str]]], List[List[str]]]:
        return lambda words: predict_tags(self.model, self.tokenizer, words, self.id2tag)


def train_softmax(
    corpus: str,
    corpus_dir: Path,
    transformer: str,
    budget: Budget,
    seed: int,
    head_lr_scale: float,
    model_dir: Path,
    infer_batch_size: int,
    base_rate: Optional[float] = None,
) -> Dict[str, Any]:
    """Train to the budget, keep the best dev checkpoint, score it on test
    (``base_rate``: the transformer's rate, None: the configs')."""
    wall_start = time.perf_counter()
    torch.manual_seed(seed)
    lengths = [len(doc) for doc in load_docs(corpus_dir / "train.spacy", Vocab())]
    plan = batch_plan(corpus, lengths, budget.max_words, seed)
    sched = schedule(corpus, plan, lengths, budget)
    trainer = SoftmaxTrainer(
        corpus,
        corpus_dir,
        transformer,
        sched["total_steps"],
        sched["warmup_steps"],
        head_lr_scale,
        base_rate,
        constant_rate=budget.constant_rate,
    )
    best_dir = model_dir / "best"
    model_dir.mkdir(parents=True, exist_ok=True)

    def evaluate() -> Dict[str, Any]:
        preds = predict_docs(trainer.model, trainer.tokenizer, trainer.dev_docs, trainer.id2tag, infer_batch_size)
        return score_docs(trainer.dev_docs, preds["argmax"], full=False)

    recorder = TrainingRecorder(
        budget, len(plan), evaluate, lambda: trainer.save(best_dir), name=f"{corpus}/softmax/seed{seed}"
    )
    init_seconds = time.perf_counter() - wall_start
    for batch in plan:
        start = time.perf_counter()
        loss = trainer.step(batch)
        if recorder.step(sum(lengths[i] for i in batch), time.perf_counter() - start, loss):
            break
    model, tokenizer, id2tag = load_softmax(best_dir)
    gold = load_docs(corpus_dir / "test.spacy", Vocab())
    start = time.perf_counter()
    predicted = predict_docs(model, tokenizer, gold, id2tag, infer_batch_size, ("argmax", "constrained"))
    test = score_docs(gold, predicted["argmax"])
    test["test_seconds"] = time.perf_counter() - start  # both decodings of one forward pass
    # The same checkpoint (chosen on dev with argmax decoding), decoded to valid sequences only.
    test["constrained"] = score_docs(gold, predicted["constrained"])
    opt = optimizer_settings(corpus)["optimizer"]
    return {
        **recorder.result(),
        **test,
        "init_seconds": init_seconds,
        "schedule": sched,
        "config": {
            "learn_rate": with_base_rate(opt["learn_rate"], base_rate, budget.constant_rate),
            "head_lr_scale_setting": head_lr_scale,
            "weight_decay": opt["L2"],
            "grad_clip": opt["grad_clip"],
            "labelling": "first subword",
            "tags": trainer.id2tag,
        },
    }


def hf_encoder(path: str, device: str = "cpu") -> Callable[[Sequence[Sequence[str]]], None]:
    """The bare transformer forward, tokenization and batching as in ``predict_tags``."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, use_fast=True)
    model = AutoModel.from_pretrained(path).to(device)
    model.eval()

    def forward(words: Sequence[Sequence[str]]) -> None:
        encoding = encode(tokenizer, words).to(device)
        with torch.inference_mode():
            model(**encoding)

    return forward
