"""Write the ready-to-train configs in this folder.

    python configs/generate.py          # rewrite configs/{en,zh}/*.cfg
    python configs/generate.py --check  # exit 1 if a config is out of date

Each config trains ``crf_ner`` with one tok2vec (a transformer, or spaCy's
CPU ``HashEmbedCNN``) and one encoder (BiLSTM, IDCNN or none) for one
language. This file states only the choices that make each config; spaCy
fills in everything else from the registered functions' defaults (as
``spacy init fill-config`` does), so the configs agree with the code's
defaults by construction. Edit this file, not the generated configs.
"""

import sys
from pathlib import Path
from typing import Any, Dict, List

from spacy import util
from thinc.api import Config

HERE = Path(__file__).parent

LANGUAGES: Dict[str, Dict[str, Any]] = {
    "en": {
        "transformer": "bert-base-cased",
        "tokenizer": {"@tokenizers": "spacy.Tokenizer.v1"},
        "subword_features": True,
    },
    "zh": {
        "transformer": "bert-base-chinese",
        # One token per character, like the character-per-line NER corpora.
        "tokenizer": {"@tokenizers": "spacy.zh.ChineseTokenizer", "segmenter": "char"},
        "initialize_tokenizer": {"pkuseg_model": None, "pkuseg_user_dict": "default"},
        # Single characters: prefix, suffix and shape add nothing to the norm.
        "subword_features": False,
    },
}

ENCODERS: Dict[str, Dict[str, Any]] = {
    "bilstm": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1"},
    "idcnn": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2"},
    "none": {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"},
}
NAMES = {"bilstm": "bilstm_crf", "idcnn": "idcnn_crf", "none": "crf"}
TITLES = {
    ("bert", "bilstm"): "BERT-BiLSTM-CRF: transformer -> BiLSTM -> emissions -> CRF",
    ("bert", "idcnn"): "BERT-IDCNN-CRF: transformer -> iterated dilated CNN -> emissions -> CRF",
    ("bert", "none"): "BERT-CRF: transformer -> emissions -> CRF",
    ("cnn", "bilstm"): "CNN-BiLSTM-CRF (CPU): HashEmbedCNN -> BiLSTM -> emissions -> CRF",
    ("cnn", "idcnn"): "CNN-IDCNN-CRF (CPU): HashEmbedCNN -> iterated dilated CNN -> emissions -> CRF",
    ("cnn", "none"): "CNN-CRF (CPU): HashEmbedCNN -> emissions -> CRF",
}
MAX_STEPS = 20000


def tok2vec(kind: str, lang: str) -> Dict[str, Any]:
    if kind == "bert":
        return {
            "@architectures": "spacy-transformers.TransformerListener.v1",
            "grad_factor": 1.0,
            "upstream": "*",
            "pooling": {"@layers": "reduce_mean.v1"},
        }
    if lang == "zh":
        # Characters, their bigrams and jieba's word boundaries (CharNgramEmbed.v1),
        # mixed over a one-character window on each side.
        return {
            "@architectures": "spacy.Tok2Vec.v2",
            "embed": {"@architectures": "spacy-bilstm-crf.CharNgramEmbed.v1", "width": 96},
            "encode": {
                "@architectures": "spacy.MaxoutWindowEncoder.v2",
                "width": 96,
                "depth": 2,
                "window_size": 1,
                "maxout_pieces": 3,
            },
        }
    return {
        "@architectures": "spacy.HashEmbedCNN.v2",
        "pretrained_vectors": None,
        "width": 96,
        "depth": 4,
        "embed_size": 4000,
        "window_size": 1,
        "maxout_pieces": 3,
        "subword_features": LANGUAGES[lang]["subword_features"],
    }


def base_config(lang: str, kind: str, encoder: str) -> Config:
    """The settings that make one config; everything else is filled in."""
    language = LANGUAGES[lang]
    bert = kind == "bert"
    components: Dict[str, Any] = {}
    if bert:
        components["transformer"] = {
            "factory": "transformer",
            "max_batch_items": 4096,
            "model": {
                "@architectures": "spacy-transformers.TransformerModel.v3",
                "name": "${vars.transformer}",
                "mixed_precision": False,
                "get_spans": {"@span_getters": "spacy-transformers.strided_spans.v1", "window": 128, "stride": 96},
                "tokenizer_config": {"use_fast": True},
            },
        }
    components["crf_ner"] = {
        "factory": "crf_ner",
        # The head (encoder, emissions, CRF) learns at learn_rate * head_lr_scale.
        "head_lr_scale": 20.0 if bert else 1.0,
        "model": {
            "@architectures": "spacy-bilstm-crf.CRFTagger.v1",
            "tok2vec": tok2vec(kind, lang),
            "encoder": ENCODERS[encoder],
        },
    }
    learn_rate: Any = 0.001
    if lang == "zh" and not bert:
        # The Chinese CPU recipe (docs/benchmarks.md, the ablation): a short
        # warm-up, then a linear decay to 0 at the last step.
        learn_rate = {
            "@schedules": "warmup_linear.v1",
            "warmup_steps": 200,
            "total_steps": "${training.max_steps}",
            "initial_rate": 0.002,
        }
    if bert:
        learn_rate = {
            "@schedules": "warmup_linear.v1",
            "warmup_steps": 250,
            "total_steps": "${training.max_steps}",
            "initial_rate": 0.00005,
        }
    config = {
        "paths": {"train": None, "dev": None},
        "vars": {"transformer": language["transformer"]},
        "system": {"gpu_allocator": "pytorch" if bert else None, "seed": 0},
        "nlp": {
            "lang": lang,
            "pipeline": list(components),
            "batch_size": 64 if bert else 256,
            "tokenizer": language["tokenizer"],
        },
        "components": components,
        "corpora": {
            "train": {"@readers": "spacy.Corpus.v1", "path": "${paths.train}", "max_length": 0},
            "dev": {"@readers": "spacy.Corpus.v1", "path": "${paths.dev}", "max_length": 0},
        },
        "training": {
            "max_steps": MAX_STEPS,
            "patience": 1600,
            "eval_frequency": 200,
            "batcher": {
                "@batchers": "spacy.batch_by_words.v1",
                "discard_oversize": False,
                "tolerance": 0.2,
                "size": {
                    "@schedules": "compounding.v1",
                    "start": 100 if bert else 500,
                    "stop": 1000 if bert else 2000,
                    "compound": 1.001,
                },
            },
            "optimizer": {"@optimizers": "Adam.v1", "grad_clip": 1.0, "learn_rate": learn_rate},
            "logger": {"@loggers": "spacy.ConsoleLogger.v1", "progress_bar": True},
        },
        "initialize": {"tokenizer": language.get("initialize_tokenizer", {})},
    }
    if lang == "zh" and not bert:
        # Chinese CPU: more dropout, on the embeddings too (the ablation's choice).
        config["training"]["dropout"] = 0.2
    return Config(config)


def title(lang: str, kind: str, encoder: str) -> str:
    text = TITLES[(kind, encoder)]
    return text.replace("HashEmbedCNN", "CharNgramEmbed (characters, bigrams, words)") if lang == "zh" else text


def render(lang: str, kind: str, encoder: str) -> str:
    """The text of one config: the base settings, filled in by spaCy."""
    nlp = util.load_model_from_config(base_config(lang, kind, encoder), auto_fill=True, validate=True)
    path = f"configs/{lang}/{kind}_{NAMES[encoder]}.cfg"
    extra = f" --vars.transformer {LANGUAGES[lang]['transformer']}" if kind == "bert" else ""
    header = (
        "# Generated by configs/generate.py: edit that file, not this one.\n"
        f"# {title(lang, kind, encoder)}\n"
        f"# Train: python -m spacy train {path} --paths.train TRAIN.spacy --paths.dev DEV.spacy{extra}\n"
    )
    return header + "\n" + "\n\n".join(_sections(nlp.config)) + "\n"


SECTION_ORDER = ("paths", "vars", "system", "nlp", "components", "corpora", "training", "pretraining", "initialize")


def _sections(config: Config) -> List[str]:
    """The config's text cut into readable blocks: top-level sections in a
    fixed order, each component on its own (confection writes nested
    sections breadth-first, which would interleave the components)."""
    blocks = []
    for name in sorted(config, key=lambda key: (SECTION_ORDER + (key,)).index(key)):
        if name == "components":
            blocks.append("[components]")
            for key, value in config[name].items():
                blocks.append(Config({name: {key: value}}).to_str().split("\n", 2)[2])  # without "[components]"
        else:
            blocks.append(Config({name: config[name]}).to_str())
    return blocks


def all_configs() -> Dict[Path, str]:
    return {
        HERE / lang / f"{kind}_{NAMES[encoder]}.cfg": render(lang, kind, encoder)
        for lang in LANGUAGES
        for kind in ("bert", "cnn")
        for encoder in ENCODERS
    }


def main(argv: list) -> int:
    stale = []
    for path, text in all_configs().items():
        if "--check" in argv:
            if not path.exists() or path.read_text(encoding="utf8") != text:
                stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf8")
    for path in stale:
        print(f"out of date: {path} (run python configs/generate.py)", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
