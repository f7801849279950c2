"""The systems compared, their spaCy configs, and the shared batch plan.

Every system of a corpus and seed sees the same batches of the same sentences
in the same order (``batch_plan``). A system's config is the package's config
for the corpus with the data paths, the encoder, the head learning-rate scale
and the schedule's steps set; spaCy ``ner`` is the ``crf`` config with
``crf_ner`` swapped for ``ner`` over the identical tok2vec.
"""

import copy
import itertools
import random
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import spacy
from spacy.util import load_config, registry
from thinc.api import Config, Model

from .common import REPO, read_json
from .rules import INIT_SAMPLE
from .specs import SystemSpec

IDCNN_V1 = {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1"}  # its registered defaults
PRETRAIN_EPOCHS = 2


def _systems(prefix: str, transformer: bool) -> List[SystemSpec]:
    systems = [
        SystemSpec("bilstm_crf", f"{prefix}-BiLSTM-CRF", "crf_ner", base="bilstm_crf"),
        SystemSpec("idcnn_crf", f"{prefix}-IDCNN-CRF (residual, IDCNNEncoder.v2)", "crf_ner", base="idcnn_crf"),
        SystemSpec(
            "idcnn_strubell",
            f"{prefix}-IDCNN-CRF, Strubell's plain stack (IDCNNEncoder.v1)",
            "crf_ner",
            base="idcnn_crf",
            encoder=IDCNN_V1,
            seeds=1,
        ),
        SystemSpec(
            "idcnn_sized",
            f"{prefix}-IDCNN-CRF sized to the BiLSTM's parameters",
            "crf_ner",
            base="idcnn_crf",
            sized_to="bilstm_crf",
            seeds=1,
        ),
        SystemSpec("crf", f"{prefix}-CRF (no encoder)", "crf_ner", base="crf"),
        SystemSpec("spacy_ner", f"spaCy ner on the {'transformer' if transformer else 'CNN tok2vec'}", "ner"),
    ]
    if transformer:
        systems.append(SystemSpec("softmax", "BERT-softmax (transformers token classifier)", "softmax"))
        systems.append(SystemSpec("encoder_only", "transformer alone (spaCy component)", "encoder"))
        systems.append(SystemSpec("hf_encoder_only", "transformer alone (transformers AutoModel)", "encoder"))
    else:
        systems.append(SystemSpec("encoder_only", "CNN tok2vec alone (spaCy component)", "encoder"))
    return systems


SYSTEMS: Dict[str, Dict[str, SystemSpec]] = {
    "conll2003": {s.name: s for s in _systems("BERT", True)},
    "msra": {s.name: s for s in _systems("CNN", False)},
}

_TOK2VEC = "components.crf_ner.model.tok2vec"
_EMBED = f"{_TOK2VEC}.embed"


def _hash_embed_cnn() -> Dict[str, Any]:
    """spaCy's HashEmbedCNN as the Chinese configs had it before CharNgramEmbed
    (issue 25): the English CPU configs' block without subword features."""
    block = dict(
        load_config(REPO / "configs" / "en" / "cnn_bilstm_crf.cfg")["components"]["crf_ner"]["model"]["tok2vec"]
    )
    return {**block, "subword_features": False}


def _ablation_rows() -> List[SystemSpec]:
    """The Chinese feature and recipe ablation: each row the default BiLSTM-CRF
    config (``configs/zh/cnn_bilstm_crf.cfg``) with one thing changed."""
    default = "characters + bigrams + jieba words, the configs' recipe"
    return [
        SystemSpec("words", f"BiLSTM-CRF, {default}", "crf_ner", base="bilstm_crf", seeds=3),
        SystemSpec(
            "bigrams",
            "BiLSTM-CRF, characters + bigrams (no word boundaries)",
            "crf_ner",
            base="bilstm_crf",
            overrides={f"{_EMBED}.segmenter": None},
        ),
        SystemSpec(
            "chars",
            "BiLSTM-CRF, characters alone (CharNgramEmbed without bigrams or words)",
            "crf_ner",
            base="bilstm_crf",
            overrides={f"{_EMBED}.segmenter": None, f"{_EMBED}.bigrams": False},
        ),
        SystemSpec(
            "hash_cnn",
            "BiLSTM-CRF, the old features (HashEmbedCNN.v2, 4,000 rows), the configs' recipe",
            "crf_ner",
            base="bilstm_crf",
            overrides={_TOK2VEC: _hash_embed_cnn()},
        ),
        SystemSpec(
            "words_old_recipe",
            "BiLSTM-CRF, characters + bigrams + words, the old recipe (constant 1e-3, dropout 0.1)",
            "crf_ner",
            base="bilstm_crf",
            overrides={"training.optimizer.learn_rate": 0.001, "training.dropout": 0.1},
        ),
        SystemSpec(
            "pretrained",
            f"BiLSTM-CRF, {default}, its tok2vec pretrained on the training text "
            f"(spacy pretrain, masked characters, {PRETRAIN_EPOCHS} epochs)",
            "crf_ner",
            base="bilstm_crf",
            pretrain_epochs=PRETRAIN_EPOCHS,
        ),
        SystemSpec("idcnn_words", f"IDCNN-CRF (residual), {default}", "crf_ner", base="idcnn_crf"),
        SystemSpec("ner_words", f"spaCy ner, {default}", "ner", base="crf"),
    ]


ABLATIONS: Dict[str, Dict[str, SystemSpec]] = {"msra": {s.name: s for s in _ablation_rows()}}


def system(corpus: str, name: str) -> SystemSpec:
    known = {**SYSTEMS.get(corpus, {}), **ABLATIONS.get(corpus, {})}
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown system {corpus}/{name}: choose from {sorted(known)}") from None


def _override(config: Dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    node = config
    for part in parents:
        node = node[part]
    if leaf not in node:
        raise KeyError(f"ablation override {path!r}: no such setting in the base config")
    node[leaf] = copy.deepcopy(value)


def trained_systems(corpus: str) -> List[str]:
    return [name for name, spec in SYSTEMS[corpus].items() if spec.trained]


def is_transformer_corpus(corpus: str) -> bool:
    return corpus == "conll2003"


def config_path(corpus: str, base: str) -> Path:
    lang, prefix = ("en", "bert") if is_transformer_corpus(corpus) else ("zh", "cnn")
    return REPO / "configs" / lang / f"{prefix}_{base}.cfg"


def ner_component(tok2vec: Dict[str, Any], transformer: bool) -> Dict[str, Any]:
    """spaCy's ``ner`` as spaCy's quickstart configures it for this tok2vec."""
    return {
        "factory": "ner",
        "incorrect_spans_key": None,
        "moves": None,
        "update_with_oracle_cut_size": 100,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
        "model": {
            "@architectures": "spacy.TransitionBasedParser.v2",
            "state_type": "ner",
            "extra_state_tokens": False,
            "hidden_width": 64,
            "maxout_pieces": 2,
            "use_upper": not transformer,
            "nO": None,
            "tok2vec": tok2vec,
        },
    }


def base_config(corpus: str, base: str = "crf") -> Config:
    return load_config(config_path(corpus, base), interpolate=False)


def encoder_input_width(corpus: str, transformer: Optional[str]) -> int:
    """The width of the token vectors the encoder reads: the transformer's
    hidden size (CoNLL) or the CPU tok2vec's width (MSRA)."""
    if is_transformer_corpus(corpus):
        if transformer is None:
            raise ValueError("a transformer folder is needed for CoNLL")
        return int(read_json(Path(transformer) / "config.json")["hidden_size"])
    tok2vec = base_config(corpus)["components"]["crf_ner"]["model"]["tok2vec"]
    # HashEmbedCNN has a width; spacy.Tok2Vec.v2 (over CharNgramEmbed) its encoder's.
    return int(tok2vec["width"] if "width" in tok2vec else tok2vec["encode"]["width"])


def encoder_block(corpus: str, spec: SystemSpec, width: int) -> Dict[str, Any]:
    """The encoder block of ``spec``'s config, for token vectors of ``width``."""
    block = dict(base_config(corpus, spec.base)["components"]["crf_ner"]["model"]["encoder"])
    if spec.encoder is not None:
        block = dict(spec.encoder)
    if spec.sized_to is not None:
        target = encoder_parameters(corpus, system(corpus, spec.sized_to), width)
        block["width"] = sized_width(block, width, target)
    return dict(registry.fill({"encoder": block})["encoder"])  # defaults written out


def encoder_parameters(corpus: str, spec: SystemSpec, width: int) -> int:
    return count_parameters(_frozen(encoder_block(corpus, spec, width)), width)


def _frozen(block: Dict[str, Any]) -> str:
    return Config({"encoder": block}).to_str()


@lru_cache(maxsize=64)
def count_parameters(block_text: str, width: int) -> int:
    """Trainable parameters of an encoder block built for input ``width``."""
    block = Config().from_str(block_text)["encoder"]
    layer: Model = registry.resolve({"encoder": block})["encoder"]
    layer.initialize(X=[layer.ops.alloc2f(3, width)])
    total = 0
    for node in layer.walk():
        total += sum(node.get_param(name).size for name in node.param_names if node.has_param(name))
        for shim in node.shims:
            total += sum(p.numel() for p in shim._model.parameters() if p.requires_grad)
    return total


def sized_width(block: Dict[str, Any], input_width: int, target: int) -> int:
    """The ``width`` of ``block`` whose parameter count is closest to ``target``
    (parameters grow with width, so a bisection finds it)."""
    low, high = 1, 8
    while count_parameters(_frozen({**block, "width": high}), input_width) < target:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        if count_parameters(_frozen({**block, "width": mid}), input_width) < target:
            low = mid
        else:
            high = mid
    return min((low, high), key=lambda w: abs(count_parameters(_frozen({**block, "width": w}), input_width) - target))


def build_config(
    corpus: str,
    name: str,
    corpus_dir: Path,
    transformer: Optional[str],
    total_steps: int,
    warmup_steps: Optional[int],
    head_lr_scale: float,
    seed: int = 0,
    base_rate: Optional[float] = None,
    constant_rate: bool = False,
) -> Config:
    """The config of spaCy system ``name`` (``crf_ner`` variants or ``ner``).

    ``head_lr_scale`` goes to ``crf_ner``'s own setting; spaCy ``ner`` has no
    such setting, so the training loop applies it (``bench.train_spacy``).
    The schedule's total steps are ``total_steps`` and its warm-up
    ``warmup_steps`` (None: the config's), its rate ``base_rate`` (None: the
    config's), constant after the warm-up with ``constant_rate``; ``seed`` is
    the one ``init_nlp`` seeds the random generators with (``[system] seed``)."""
    spec = system(corpus, name)
    overrides: Dict[str, Any] = {
        "paths.train": str(corpus_dir / "train.spacy"),
        "paths.dev": str(corpus_dir / "dev.spacy"),
    }
    if is_transformer_corpus(corpus):
        if transformer is None:
            raise ValueError("a transformer folder is needed for CoNLL")
        overrides["vars.transformer"] = str(transformer)
    config = load_config(config_path(corpus, spec.base), overrides=overrides, interpolate=False)
    # ``init_nlp`` reads the train corpus only to find the labels (and spaCy
    # ner's actions); a sample holds them all. Training goes through the plan.
    config["corpora"]["train"]["limit"] = INIT_SAMPLE
    config["system"]["seed"] = int(seed)
    for path, value in (spec.overrides or {}).items():
        _override(config, path, value)
    component = config["components"]["crf_ner"]
    if spec.kind == "ner":
        tok2vec = copy.deepcopy(dict(component["model"]["tok2vec"]))
        config["components"].pop("crf_ner")
        config["components"]["ner"] = ner_component(tok2vec, is_transformer_corpus(corpus))
        config["nlp"]["pipeline"] = [p if p != "crf_ner" else "ner" for p in config["nlp"]["pipeline"]]
    elif spec.kind == "crf_ner":
        component["head_lr_scale"] = float(head_lr_scale)
        if spec.encoder is not None or spec.sized_to is not None:
            width = encoder_input_width(corpus, transformer)
            component["model"]["encoder"] = encoder_block(corpus, spec, width)
    else:
        raise ValueError(f"{name} is not a spaCy system")
    optimizer = config["training"]["optimizer"]
    optimizer["learn_rate"] = with_base_rate(optimizer["learn_rate"], base_rate, constant_rate)
    learn_rate = config["training"]["optimizer"]["learn_rate"]
    if isinstance(learn_rate, dict):
        learn_rate["total_steps"] = max(int(total_steps), 1)
        if warmup_steps is not None:
            learn_rate["warmup_steps"] = int(warmup_steps)
    config["training"]["max_steps"] = max(int(total_steps), 1)
    config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
    return Config(config)


def with_pretraining(config: Config, raw_text: Path, epochs: int) -> Config:
    """``config`` with spaCy's default ``[pretraining]`` block aimed at
    ``crf_ner``'s tok2vec: ``epochs`` over the texts of ``raw_text`` (JSONL),
    the masked-characters objective over all 3 UTF-8 bytes of a CJK character."""
    defaults = load_config(Path(spacy.__file__).parent / "default_config_pretraining.cfg", interpolate=False)
    out = copy.deepcopy(dict(config))
    out["pretraining"] = {
        **copy.deepcopy(dict(defaults["pretraining"])),
        "max_epochs": int(epochs),
        "component": "crf_ner",
        "layer": "tok2vec",
    }
    out["pretraining"]["objective"]["n_characters"] = 3
    out["corpora"]["pretrain"] = {
        **copy.deepcopy(dict(defaults["corpora"]["pretrain"])),
        "path": str(raw_text),
        "min_length": 1,
    }
    return Config(out)


def optimizer_settings(corpus: str) -> Dict[str, Any]:
    """The optimizer and batcher sections of the corpus's configs."""
    training = base_config(corpus)["training"]
    return {
        "optimizer": copy.deepcopy(dict(training["optimizer"])),
        "batcher": copy.deepcopy(dict(training["batcher"])),
        "dropout": training["dropout"],
    }


def config_warmup(corpus: str) -> int:
    """The warm-up steps of the corpus's configs (0: a constant rate)."""
    learn_rate = optimizer_settings(corpus)["optimizer"]["learn_rate"]
    return int(learn_rate.get("warmup_steps", 0)) if isinstance(learn_rate, dict) else 0


@registry.schedules("bench.warmup_constant.v1")
def warmup_constant(initial_rate: float, warmup_steps: int, total_steps: int = 0) -> Iterator[float]:
    """The configs' linear warm-up over ``warmup_steps``, then ``initial_rate``
    for good: no decay towards a cap (``total_steps`` is accepted, unused), so
    that dev F1's patience ends training (issue 27)."""
    step = 0
    while True:
        yield initial_rate * (step / max(1, warmup_steps) if step < warmup_steps else 1.0)
        step += 1


def with_base_rate(learn_rate: Any, base_rate: Optional[float], constant: bool = False) -> Any:
    """A config's ``learn_rate`` (a number or a schedule block) with its
    rate set to ``base_rate`` (None: as it is), and with ``constant`` its
    decay replaced by a constant rate after the warm-up."""
    if not isinstance(learn_rate, dict):
        return learn_rate if base_rate is None else float(base_rate)
    if "initial_rate" not in learn_rate:
        raise ValueError(f"cannot set the base rate of the schedule {learn_rate.get('@schedules')!r}: no initial_rate")
    block = dict(learn_rate)
    if base_rate is not None:
        block["initial_rate"] = float(base_rate)
    if constant:
        block = {"@schedules": "bench.warmup_constant.v1", **{k: v for k, v in block.items() if k != "@schedules"}}
    return block


def learn_rates(
    corpus: str, total_steps: int, warmup: int, base_rate: Optional[float] = None, constant: bool = False
) -> List[float]:
    """The learning rate of each of ``total_steps`` steps, as the configs'
    schedule (with this total and warm-up, ``base_rate`` where given, and
    ``constant``: no decay) gives it to Thinc's optimizer."""
    settings = copy.deepcopy(optimizer_settings(corpus)["optimizer"]["learn_rate"])
    learn_rate = with_base_rate(settings, base_rate, constant)
    if not isinstance(learn_rate, dict):
        return [float(learn_rate)] * total_steps
    learn_rate.update(total_steps=total_steps, warmup_steps=warmup)
    schedule = registry.resolve({"s": learn_rate})["s"]
    return [float(x) for x in itertools.islice(schedule, total_steps)]


class _Sized:
    __slots__ = ("index", "length")

    def __init__(self, index: int, length: int) -> None:
        self.index = index
        self.length = length

    def __len__(self) -> int:
        return self.length


def batch_plan(corpus: str, lengths: Sequence[int], budget_words: int, seed: int) -> List[List[int]]:
    """Batches (lists of sentence indices) until ``budget_words`` words are seen.

    Sentences are shuffled each epoch with a seeded generator and cut into
    batches by the corpus config's own batcher (``spacy.batch_by_words.v1``
    with its compounding size), as ``spacy train`` does per epoch.
    """
    batcher = registry.resolve({"b": optimizer_settings(corpus)["batcher"]})["b"]
    items = [_Sized(i, n) for i, n in enumerate(lengths) if n > 0]
    if not items:
        raise ValueError("no training sentences")
    rng = random.Random(seed)
    plan: List[List[int]] = []
    seen = 0
    while seen < budget_words:
        order = list(items)
        rng.shuffle(order)
        for batch in batcher(order):
            plan.append([item.index for item in batch])
            seen += sum(item.length for item in batch)
            if seen >= budget_words:
                break
    return plan


def steps_for(plan: Sequence[Sequence[int]], lengths: Sequence[int], words: int) -> int:
    """How many steps of ``plan`` it takes to see ``words`` words."""
    seen = 0
    for step, batch in enumerate(plan, start=1):
        seen += sum(lengths[i] for i in batch)
        if seen >= words:
            return step
    return len(plan)
