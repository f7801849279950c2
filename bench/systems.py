"""The systems compared, their training configs, and the shared batch plan.

Every system of a corpus sees the same batches of the same sentences in the
same order (``batch_plan``), cut at the same number of training words.
"""

import copy
import random
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from spacy.util import load_config, registry
from thinc.api import Config

from .common import REPO

CRF_SYSTEMS = ("bilstm_crf", "idcnn_crf", "crf")
SPACY_SYSTEMS = (*CRF_SYSTEMS, "spacy_ner")
SYSTEMS: Dict[str, List[str]] = {
    "conll2003": [*SPACY_SYSTEMS, "softmax", "encoder_only", "hf_encoder_only"],
    "msra": [*SPACY_SYSTEMS, "encoder_only"],
}
TRAINED = (*SPACY_SYSTEMS, "softmax")

TITLES = {
    ("conll2003", "bilstm_crf"): "BERT-BiLSTM-CRF (crf_ner)",
    ("conll2003", "idcnn_crf"): "BERT-IDCNN-CRF (crf_ner)",
    ("conll2003", "crf"): "BERT-CRF (crf_ner, no encoder)",
    ("conll2003", "spacy_ner"): "spaCy ner on the transformer",
    ("conll2003", "softmax"): "BERT-softmax (transformers token classifier)",
    ("conll2003", "encoder_only"): "transformer alone (spaCy pipeline, no head)",
    ("conll2003", "hf_encoder_only"): "transformer alone (transformers AutoModel, no head)",
    ("msra", "bilstm_crf"): "CNN-BiLSTM-CRF (crf_ner)",
    ("msra", "idcnn_crf"): "CNN-IDCNN-CRF (crf_ner)",
    ("msra", "crf"): "CNN-CRF (crf_ner, no encoder)",
    ("msra", "spacy_ner"): "spaCy ner on the CNN tok2vec",
    ("msra", "encoder_only"): "CNN tok2vec alone (no head)",
}

# Sentences of train that ``init_nlp`` reads to initialize the pipeline.
INIT_SAMPLE = 2000

# The encoder-alone system that bounds each system's inference throughput.
CEILING = {"softmax": "hf_encoder_only"}


def is_transformer_corpus(corpus: str) -> bool:
    return corpus == "conll2003"


def config_path(corpus: str, system: str) -> Path:
    lang, prefix = ("en", "bert") if is_transformer_corpus(corpus) else ("zh", "cnn")
    name = system if system in CRF_SYSTEMS else "crf"
    return REPO / "configs" / lang / f"{prefix}_{name}.cfg"


def _ner_component(tok2vec: Dict[str, Any], transformer: bool) -> Dict[str, Any]:
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


def build_config(
    corpus: str,
    system: str,
    corpus_dir: Path,
    transformer: Optional[str],
    total_steps: int,
    warmup_steps: Optional[int] = None,
) -> Config:
    """The config of a spaCy system: the package's config for the corpus, with
    the data paths and encoder set, and the schedule's total steps set to the
    budget's (warmup too, when given). ``spacy_ner`` is the ``crf`` config with
    ``crf_ner`` swapped for spaCy's ``ner`` over the identical tok2vec."""
    overrides: Dict[str, Any] = {
        "paths.train": str(corpus_dir / "train.spacy"),
        "paths.dev": str(corpus_dir / "dev.spacy"),
    }
    if is_transformer_corpus(corpus):
        if transformer is None:
            raise ValueError("a transformer path is needed for CoNLL")
        overrides["vars.transformer"] = str(transformer)
    config = load_config(config_path(corpus, system), overrides=overrides, interpolate=False)
    # ``init_nlp`` reads the train corpus only to find the labels (and spaCy
    # ner's actions); a sample holds them all and spares reading all of MSRA.
    # Training itself goes through every sentence of the batch plan.
    config["corpora"]["train"]["limit"] = INIT_SAMPLE
    if system == "spacy_ner":
        crf_ner = config["components"].pop("crf_ner")
        tok2vec = copy.deepcopy(dict(crf_ner["model"]["tok2vec"]))
        config["components"]["ner"] = _ner_component(tok2vec, is_transformer_corpus(corpus))
        config["nlp"]["pipeline"] = [p if p != "crf_ner" else "ner" for p in config["nlp"]["pipeline"]]
    learn_rate = config["training"]["optimizer"]["learn_rate"]
    if isinstance(learn_rate, dict):
        learn_rate["total_steps"] = max(int(total_steps), 1)
        if warmup_steps is not None:
            learn_rate["warmup_steps"] = int(warmup_steps)
    config["training"]["max_steps"] = max(int(total_steps), 1)
    config["training"]["logger"] = {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": False}
    return Config(config)


def optimizer_settings(corpus: str) -> Dict[str, Any]:
    """The optimizer and batcher sections of the corpus's configs, as text-able dicts."""
    config = load_config(config_path(corpus, "crf"), interpolate=False)
    training = config["training"]
    return {
        "optimizer": copy.deepcopy(dict(training["optimizer"])),
        "batcher": copy.deepcopy(dict(training["batcher"])),
        "dropout": training["dropout"],
        "head_lr_scale": config["components"]["crf_ner"]["head_lr_scale"],
    }


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
    config = load_config(config_path(corpus, "crf"), interpolate=False)
    batcher = registry.resolve({"b": config["training"]["batcher"]})["b"]
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


def plan_words(plan: Sequence[Sequence[int]], lengths: Sequence[int]) -> int:
    return sum(lengths[i] for batch in plan for i in batch)


def checkpoints(budget_words: int, fractions: Sequence[float]) -> List[int]:
    """Words-seen values at which dev F1 is measured (the last is the budget)."""
    points = sorted({max(1, int(round(budget_words * f))) for f in fractions} | {budget_words})
    return [p for p in points if p <= budget_words]
