"""Command line: ``spacy-bilstm-crf COMMAND ...`` (or ``python -m spacy_bilstm_crf``)."""

import argparse
import sys
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

PROG = "spacy-bilstm-crf"
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


def _add_convert(subparsers: "argparse._SubParsersAction[argparse.ArgumentParser]") -> Command:
    from .convert.schemes import SCHEMES

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
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="column file(s)")
    parser.add_argument("output_dir", type=Path, metavar="OUTPUT_DIR", help="folder for .spacy files")
    parser.add_argument(
        "--scheme",
        choices=("auto",) + SCHEMES,
        default="auto",
        help="tag scheme (default: auto, detected from the tags of the whole file)",
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
        help="put this fraction of the docs, chosen by a seeded shuffle, in OUTPUT_DIR/dev.spacy",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the dev split (default 0)")
    parser.add_argument(
        "--lenient",
        action="store_true",
        help="repair malformed lines and ill-formed tag sequences (counted in the summary) instead of stopping",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="list every repair")
    return _run_convert


def _run_convert(args: argparse.Namespace) -> int:
    from .convert.column import convert

    inputs: List[Path] = args.inputs
    stems = [path.stem for path in inputs]
    if len(set(stems)) != len(stems):
        raise ValueError("input files must have different names (each writes <stem>.spacy)")
    if args.dev_fraction > 0 and len(inputs) > 1:
        raise ValueError("--dev-fraction needs a single INPUT")
    for path in inputs:
        summary = convert(
            path,
            args.output_dir,
            scheme=args.scheme,
            delimiter=args.delimiter,
            lang=args.lang,
            n_sents=args.n_sents,
            dev_fraction=args.dev_fraction,
            seed=args.seed,
            lenient=args.lenient,
        )
        print(summary.format(verbose=args.verbose))
    return 0


def build_parser() -> Tuple[argparse.ArgumentParser, Dict[str, Command]]:
    """The argument parser and the function run by each subcommand."""
    parser = argparse.ArgumentParser(prog=PROG, description="BiLSTM-CRF NER for spaCy.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: Dict[str, Command] = {"convert": _add_convert(subparsers)}
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
    except (ValueError, OSError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"{PROG} {args.command}: error: {message}", file=sys.stderr)
        return 1
