"""Where a CPU training step and an ``nlp.pipe`` pass spend their time (issue 12).

``python -m bench breakdown --out bench/results/breakdown-NAME.json``

On the first ``--sentences`` sentences of MSRA's test file, with the CPU
config ``configs/zh/cnn_bilstm_crf.cfg`` (its encoder swapped for each
system) and spaCy ``ner`` on the same tok2vec: every system trains on the
same batches of ``--batch-size`` sentences (two warm-up steps, not counted)
and then runs ``nlp.pipe`` over the same texts. Per system, characters/s and,
through timing layers on the model's refs (``bench.timing.timed_refs``), the
microseconds per character of the tok2vec, encoder, emission layer and CRF,
forward and backward; "other" is the rest of the step (gold tags, optimizer,
copies). For inference, ``bench.timing.infer_breakdown`` splits ``crf_ner``
into emissions, Viterbi and setting the entities.

One process, systems one after the other: a quick profile, not the
benchmark's interleaved speed cell (``python -m bench run --stage speed``),
whose ratios are the ones to quote.
"""

import argparse
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from .common import DEFAULT_DATA, REPO, log, write_json
from .provenance import machine_info, package_hash
from .systems import ner_component
from .timing import infer_breakdown, timed_refs

# System -> the encoder block put into the config; None: the config's own
# (BiLSTM-CRF) or no crf_ner at all (spaCy ner).
SYSTEMS: Dict[str, Optional[Dict[str, Any]]] = {
    "spacy_ner": None,
    "bilstm_crf": None,
    "idcnn_crf": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2"},
    "crf": {"@architectures": "spacy-bilstm-crf.NoEncoder.v1"},
}
PARTS = ("tok2vec", "encoder", "emission", "crf")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with msra/test.txt")
    parser.add_argument("--sentences", type=int, default=1600)
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per training step")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help=f"comma-separated, of {', '.join(SYSTEMS)}")
    parser.add_argument("--hidden-width", type=int, help="the BiLSTM's hidden width (default: the config's)")
    parser.add_argument("--out", type=Path, help="write the JSON here")


def _config(system: str, hidden_width: Optional[int]) -> Any:
    from thinc.api import Config

    cfg = Config().from_disk(REPO / "configs" / "zh" / "cnn_bilstm_crf.cfg")
    component = cfg["components"]["crf_ner"]
    if system == "spacy_ner":
        cfg["components"]["ner"] = ner_component(component["model"]["tok2vec"], transformer=False)
        del cfg["components"]["crf_ner"]
        cfg["nlp"]["pipeline"] = ["ner"]
        return cfg
    encoder = SYSTEMS[system]
    if encoder is not None:
        component["model"]["encoder"] = dict(encoder)
    elif hidden_width is not None:
        component["model"]["encoder"]["hidden_width"] = hidden_width
    return cfg


def _per_char(seconds: float, chars: int) -> float:
    return seconds / chars * 1e6


def profile_system(system: str, docs: Sequence[Any], batch_size: int, hidden_width: Optional[int]) -> Dict[str, Any]:
    import spacy
    from spacy.training import Example
    from thinc.api import fix_random_seed

    nlp = spacy.util.load_model_from_config(_config(system, hidden_width), auto_fill=True)
    examples = [Example(nlp.make_doc(doc.text), doc) for doc in docs]
    fix_random_seed(0)
    optimizer = nlp.initialize(lambda: examples[:300])
    batches = [examples[i : i + batch_size] for i in range(0, len(examples), batch_size)]
    for batch in batches[:2]:
        nlp.update(batch, sgd=optimizer)
    name = nlp.pipe_names[0]
    model = nlp.get_pipe(name).model  # type: ignore[attr-defined]
    with timed_refs(model, PARTS) as timers:
        chars, start = 0, time.perf_counter()
        for batch in batches[2:]:
            nlp.update(batch, sgd=optimizer)
            chars += sum(len(eg.predicted) for eg in batch)
        train_seconds = time.perf_counter() - start
    parts = {
        part: {"forward": _per_char(t.forward, chars), "backward": _per_char(t.backward, chars)}
        for part, t in timers.items()
    }
    timed = sum(t.total for t in timers.values())
    training = {
        "chars": chars,
        "chars_per_s": chars / train_seconds,
        "us_per_char": _per_char(train_seconds, chars),
        "parts_us_per_char": parts,
        "other_us_per_char": _per_char(train_seconds - timed, chars),
    }
    if "crf" in timers:
        training["crf_share"] = timers["crf"].total / train_seconds
    texts = [doc.text for doc in docs]
    n_chars = sum(len(doc) for doc in docs)
    start = time.perf_counter()
    list(nlp.pipe(texts, batch_size=256))
    infer_seconds = time.perf_counter() - start
    inference: Dict[str, Any] = {
        "chars_per_s": n_chars / infer_seconds,
        "us_per_char": _per_char(infer_seconds, n_chars),
    }
    seconds = infer_breakdown(nlp, list(docs), 256)
    inference["parts_us_per_char"] = {part: _per_char(value, n_chars) for part, value in seconds.items()}
    if "crf_ner.viterbi" in seconds:
        inference["viterbi_share"] = seconds["crf_ner.viterbi"] / infer_seconds  # of a whole nlp.pipe pass
    return {"training": training, "inference": inference}


def breakdown(args: argparse.Namespace) -> int:
    import torch

    from spacy_bilstm_crf.convert import read_column_file, sentences_to_docs

    if args.threads:
        torch.set_num_threads(args.threads)
    systems: List[str] = [s for s in args.systems.split(",") if s]
    unknown = sorted(set(systems) - set(SYSTEMS))
    if unknown:
        raise SystemExit(f"unknown systems {unknown}; choose from {list(SYSTEMS)}")
    corpus = read_column_file(args.data / "msra" / "test.txt", lenient=True)
    docs = sentences_to_docs(corpus.sentences[: args.sentences], "zh")
    result: Dict[str, Any] = {
        "corpus": "msra",
        "sentences": len(docs),
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "hidden_width": args.hidden_width,
        "package_hash": package_hash(),
        "machine": machine_info(),
        "systems": {},
    }
    for system in systems:
        log(f"breakdown: {system}")
        result["systems"][system] = found = profile_system(system, docs, args.batch_size, args.hidden_width)
        log(
            f"  train {found['training']['chars_per_s']:.0f} chars/s, "
            f"infer {found['inference']['chars_per_s']:.0f} chars/s"
        )
    if "spacy_ner" in result["systems"]:
        ner = result["systems"]["spacy_ner"]
        for found in result["systems"].values():
            found["train_over_ner"] = found["training"]["chars_per_s"] / ner["training"]["chars_per_s"]
            found["infer_over_ner"] = found["inference"]["chars_per_s"] / ner["inference"]["chars_per_s"]
    if args.out:
        write_json(args.out, result)
        log(f"wrote {args.out}")
    return 0
