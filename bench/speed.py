"""The speed cell of a corpus: training and inference words/s of every system,
measured side by side in one process, in interleaved rounds.

Training: every system is initialized as in its training cells, then trains
in bursts of ``speed_steps`` update steps; each round gives every system the
same steps of the shared batch plan (taken from the middle of the first
epoch, where batches have their typical size), in an order rotated from
round to round, so that a slow spell of the machine hits all systems of a
round alike. A first burst is a warm-up and is not counted. Per round, each
system's words/s and its ratio to spaCy ``ner``'s in the same round; for
``crf_ner`` systems the CRF's share of the step time (``bench.timing``).

Inference: the same pipelines (as trained by the bursts) and the encoders
alone run over the same test sentences, rounds rotated; per round each
system's words/s, its ratio to its encoder alone (``rules.ceiling_of``) and
to ``ner``. Then one timed breakdown pass per spaCy system: the seconds of
each component and of ``crf_ner``'s Viterbi decoding.
"""

from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, cast

from spacy.language import Language
from spacy.training import Example
from spacy.vocab import Vocab

from .common import clock, log, spread
from .docbins import bare_doc, load_docs, read_meta
from .rules import ceiling_of, infer_batch_size, warmup_steps
from .specs import CellSpec, CorpusSpec
from .systems import batch_plan, config_warmup, steps_for, system
from .timing import infer_breakdown, training_timers
from .train_spacy import init_pipeline, train_step

REFERENCE = "spacy_ner"


class Contender:
    """One system in the speed cell: train on a burst of batches, run inference."""

    name: str
    nlp: Optional[Language] = None

    def train(self, batches: Sequence[Sequence[int]]) -> Dict[str, float]:
        raise NotImplementedError

    def infer(self, docs: Sequence[Any], batch_size: int) -> None:
        raise NotImplementedError


class SpacyContender(Contender):
    def __init__(
        self, name: str, nlp: Language, optimizer: Any, dropout: float, examples: Dict[int, Example], scale: float
    ):
        self.name, self.nlp, self.optimizer, self.dropout = name, nlp, optimizer, dropout
        self.examples, self.scale = examples, scale

    def train(self, batches: Sequence[Sequence[int]]) -> Dict[str, float]:
        assert self.nlp is not None
        words, seconds = 0, 0.0
        with training_timers(self.nlp) as timers:
            for batch_ids in batches:
                batch = [self.examples[i] for i in batch_ids]
                start = clock()
                train_step(self.nlp, batch, self.optimizer, self.dropout, self.scale)
                seconds += clock() - start
                words += sum(len(eg) for eg in batch)
        out = {"words": float(words), "seconds": seconds}
        out.update({f"{part}_seconds": timer.total for part, timer in timers.items()})
        return out

    def infer(self, docs: Sequence[Any], batch_size: int) -> None:
        assert self.nlp is not None
        for _ in self.nlp.pipe([bare_doc(doc, self.nlp.vocab) for doc in docs], batch_size=batch_size):
            pass


class SoftmaxContender(Contender):
    def __init__(self, trainer: Any, lengths: Sequence[int]):
        self.name, self.trainer, self.lengths = "softmax", trainer, lengths
        self.predict = trainer.predictor()

    def train(self, batches: Sequence[Sequence[int]]) -> Dict[str, float]:
        words, seconds = 0, 0.0
        for batch in batches:
            start = clock()
            self.trainer.step(batch)
            seconds += clock() - start
            words += sum(self.lengths[i] for i in batch)
        return {"words": float(words), "seconds": seconds}

    def infer(self, docs: Sequence[Any], batch_size: int) -> None:
        self.trainer.model.eval()
        run_words(self.predict, docs, batch_size)


class EncoderContender(Contender):
    """An encoder alone: inference only."""

    def __init__(self, name: str, nlp: Optional[Language] = None, forward: Optional[Callable] = None):
        self.name, self.nlp, self.forward = name, nlp, forward

    def infer(self, docs: Sequence[Any], batch_size: int) -> None:
        if self.nlp is not None:
            for _ in self.nlp.pipe([bare_doc(doc, self.nlp.vocab) for doc in docs], batch_size=batch_size):
                pass
        elif self.forward is not None:
            run_words(self.forward, docs, batch_size)


def run_words(call: Callable[[Sequence[Sequence[str]]], Any], docs: Sequence[Any], batch_size: int) -> None:
    sentences = [[t.text for t in doc] for doc in docs]
    for i in range(0, len(sentences), batch_size):
        call(sentences[i : i + batch_size])


def encoder_only_nlp(corpus: str, corpus_dir: Path, transformer: Optional[str]) -> Language:
    """The corpus's tok2vec alone, as the systems' configs build it: the
    transformer component (CoNLL) or the CNN as a ``tok2vec`` component (MSRA)."""
    import copy

    from spacy.util import load_model_from_config

    from .systems import build_config

    config = build_config(corpus, "crf", corpus_dir, transformer, 1, None, 1.0)
    crf_ner = config["components"].pop("crf_ner")
    if corpus == "conll2003":
        config["nlp"]["pipeline"] = ["transformer"]
    else:
        config["components"]["tok2vec"] = {
            "factory": "tok2vec",
            "model": copy.deepcopy(dict(crf_ner["model"]["tok2vec"])),
        }
        config["nlp"]["pipeline"] = ["tok2vec"]
    nlp = load_model_from_config(config, auto_fill=True)
    sample = load_docs(corpus_dir / "test.spacy", nlp.vocab)[:10]
    nlp.initialize(lambda: [Example(bare_doc(doc, nlp.vocab), doc) for doc in sample])
    return nlp


def build_contenders(
    cell: CellSpec, corpus: CorpusSpec, plan_steps: int, warmup: int, sentence_ids: Sequence[int]
) -> Dict[str, Contender]:
    """Every system of the cell, initialized; the spaCy ones hold the
    training examples of ``sentence_ids`` (those the bursts use)."""
    from .softmax import SoftmaxTrainer, hf_encoder

    corpus_dir = Path(cell.corpus_dir)
    lengths = read_meta(corpus_dir)["lengths"]["train"]
    device = cell.key.setting  # "cpu" or "cuda"
    contenders: Dict[str, Contender] = {}
    for name in cell.systems:
        spec = system(corpus.name, name)
        scale = cell.scales.get(name, 1.0)
        if spec.kind in ("crf_ner", "ner"):
            nlp, optimizer, dropout = init_pipeline(
                corpus.name, name, corpus_dir, cell.transformer, plan_steps, warmup, scale, cell.key.seed
            )
            docs = load_docs(corpus_dir / "train.spacy", nlp.vocab)
            examples = {i: Example(bare_doc(docs[i]), docs[i]) for i in sentence_ids}
            ner_scale = scale if spec.kind == "ner" else 1.0
            contenders[name] = SpacyContender(name, nlp, optimizer, dropout, examples, ner_scale)
        elif spec.kind == "softmax":
            assert cell.transformer is not None
            trainer = SoftmaxTrainer(
                corpus.name, corpus_dir, cell.transformer, plan_steps, warmup, scale, device=device
            )
            contenders[name] = SoftmaxContender(trainer, lengths)
        elif name == "hf_encoder_only":
            assert cell.transformer is not None
            contenders[name] = EncoderContender(name, forward=hf_encoder(cell.transformer, device))
        else:
            contenders[name] = EncoderContender(name, nlp=encoder_only_nlp(corpus.name, corpus_dir, cell.transformer))
    return contenders


def rotated(names: Sequence[str], round_: int) -> List[str]:
    shift = round_ % len(names) if names else 0
    return list(names[shift:]) + list(names[:shift])


def per_round_ratio(values: Dict[str, List[float]], name: str, other: str) -> Dict[str, Any]:
    if other not in values or name == other:
        return spread([])
    return spread([a / b for a, b in zip(values[name], values[other]) if b])


def measure_training(
    contenders: Dict[str, Contender], plan: List[List[int]], start: int, corpus: CorpusSpec
) -> Dict[str, Any]:
    trainable = [n for n, c in contenders.items() if not isinstance(c, EncoderContender)]
    steps = corpus.speed_steps
    rates: Dict[str, List[float]] = {n: [] for n in trainable}
    shares: Dict[str, Dict[str, List[float]]] = {n: {} for n in trainable}
    for round_ in range(corpus.speed_rounds + 1):  # round 0: warm-up, not counted
        batches = plan[start + round_ * steps : start + (round_ + 1) * steps]
        for name in rotated(trainable, round_):
            burst = contenders[name].train(batches)
            if round_ == 0:
                continue
            rates[name].append(burst["words"] / burst["seconds"])
            for part in ("crf", "encoder"):
                if f"{part}_seconds" in burst:
                    shares[name].setdefault(part, []).append(burst[f"{part}_seconds"] / burst["seconds"])
        log(f"speed: training round {round_} done")
    return {
        name: {
            "train_words_per_s": spread(rates[name]),
            "train_over_ner": per_round_ratio(rates, name, REFERENCE),
            **{f"{part}_share_of_step": spread(values) for part, values in shares[name].items()},
        }
        for name in trainable
    }


def measure_inference(contenders: Dict[str, Contender], docs: List[Any], corpus: CorpusSpec) -> Dict[str, Any]:
    names = list(contenders)
    n_words = sum(len(doc) for doc in docs)
    batch_size = infer_batch_size(corpus.name)
    for contender in contenders.values():  # warm-up
        contender.infer(docs, batch_size)
    rates: Dict[str, List[float]] = {n: [] for n in names}
    for round_ in range(corpus.speed_rounds):
        for name in rotated(names, round_):
            start = clock()
            contenders[name].infer(docs, batch_size)
            rates[name].append(n_words / (clock() - start))
    out: Dict[str, Any] = {}
    for name in names:
        entry: Dict[str, Any] = {
            "infer_words_per_s": spread(rates[name]),
            "ceiling": ceiling_of(name),
            "infer_over_encoder": per_round_ratio(rates, name, ceiling_of(name)),
            "infer_over_ner": per_round_ratio(rates, name, REFERENCE),
        }
        nlp = contenders[name].nlp
        if isinstance(contenders[name], SpacyContender) and nlp is not None:
            parts = infer_breakdown(nlp, docs, batch_size)
            total = sum(v for k, v in parts.items() if "." not in k)
            entry["infer_seconds_by_part"] = parts
            if "crf_ner.viterbi" in parts:
                entry["crf_share_of_inference"] = parts["crf_ner.viterbi"] / total
            if "transformer" in parts:
                entry["encoder_share_of_inference"] = parts["transformer"] / total
        out[name] = entry
    return {
        "words": n_words,
        "docs": len(docs),
        "batch_size": batch_size,
        "rounds": corpus.speed_rounds,
        "systems": out,
    }


def attn_implementation(contender: Contender) -> Optional[str]:
    """The attention implementation of a contender's transformer, if it has one."""
    models = []
    if contender.nlp is not None and "transformer" in contender.nlp.pipe_names:
        for node in cast(Any, contender.nlp.get_pipe("transformer")).model.walk():
            models += [getattr(shim, "_model", None) for shim in node.shims]
    trainer = getattr(contender, "trainer", None)
    if trainer is not None:
        models.append(trainer.model)
    for model in models:
        config = getattr(model, "config", None)
        if config is not None:
            return getattr(config, "_attn_implementation", None)
    return None


def speed_cell(cell: CellSpec, corpus: CorpusSpec) -> Dict[str, Any]:
    """Interleaved training and inference words/s of ``cell.systems``."""
    corpus_dir = Path(cell.corpus_dir)
    lengths = read_meta(corpus_dir)["lengths"]["train"]
    epoch = sum(lengths)
    needed = (corpus.speed_rounds + 1) * corpus.speed_steps
    budget = epoch
    plan = batch_plan(corpus.name, lengths, budget, cell.key.seed)
    start = 0 if cell.quick else steps_for(plan, lengths, epoch // 2)
    while len(plan) < start + needed:
        budget *= 2
        plan = batch_plan(corpus.name, lengths, budget, cell.key.seed)
    warmup = warmup_steps(config_warmup(corpus.name), steps_for(plan, lengths, corpus.main.budget(epoch).min_words))
    ids = sorted({i for batch in plan[start : start + needed] for i in batch})
    contenders = build_contenders(cell, corpus, len(plan), warmup, ids)
    training = measure_training(contenders, plan, start, corpus)
    test = load_docs(corpus_dir / "test.spacy", Vocab())
    docs, total = [], 0
    for doc in test:
        if total >= corpus.speed_words:
            break
        docs.append(doc)
        total += len(doc)
    inference = measure_inference(contenders, docs, corpus)
    batches = plan[start : start + needed]
    return {
        "training": training,
        "training_steps": {
            "first_step": start,
            "steps_per_round": corpus.speed_steps,
            "rounds": corpus.speed_rounds,
            "words_per_step_mean": sum(lengths[i] for b in batches for i in b) / max(len(batches), 1),
        },
        "inference": inference,
        "attn_implementation": {name: attn_implementation(c) for name, c in contenders.items()},
        "scales": dict(cell.scales),
    }
