"""The benchmark harness (issue 9): ``python -m bench {run,plan,report}``.

    python -m bench run --quick --out DIR                      # CI smoke run, about 2 minutes
    python -m bench plan                                       # the full run's cells: done / stale / to do, hours
    python -m bench run --transformer /tmp/minilm              # the full run (resumable: skips finished cells)
    python -m bench run --transformer /tmp/minilm --cells 'conll2003/main/bilstm_crf/*'
    python -m bench report                                     # cells -> docs/benchmarks.md (+ aggregate JSON)
    python -m bench breakdown --out FILE                       # where a CPU step's time goes (docs/speed.md)
    python -m bench contention --model M --out FILE            # docs/s on a busy machine, by thread policy
    python -m bench onnx --model M --corpus C --out FILE       # the ONNX runtime against torch and ner

See bench/README.md.
"""

import argparse
import sys
from pathlib import Path
from typing import List

from .common import CELLS, REPO, RESULTS


def parse(argv: List[str]) -> argparse.Namespace:
    from .runner import add_run_arguments

    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_run_arguments(commands.add_parser("run", help="run the cells not yet done for this package code"))
    add_run_arguments(commands.add_parser("plan", help="list the cells with their status and estimated time"))
    from .breakdown import add_arguments

    add_arguments(commands.add_parser("breakdown", help="profile a CPU training step and inference, per layer"))
    from .contention import add_arguments as add_contention_arguments

    add_contention_arguments(
        commands.add_parser("contention", help="docs/s under competing busy processes, by thread policy")
    )
    from .onnx import add_arguments as add_onnx_arguments

    add_onnx_arguments(commands.add_parser("onnx", help="the exported (ONNX) runtime against torch and spaCy ner"))
    report = commands.add_parser("report", help="aggregate the cells and write the page")
    report.add_argument(
        "--cells-dir", type=Path, default=CELLS, help="folder of the cells (default: bench/results/cells)"
    )
    report.add_argument("--md", type=Path, default=REPO / "docs" / "benchmarks.md")
    report.add_argument("--img", type=Path, default=REPO / "docs" / "img")
    report.add_argument("--json", type=Path, default=RESULTS / "aggregate.json", help="the aggregate JSON")
    report.add_argument("--allow-mixed", action="store_true", help="aggregate cells of different package code")
    report.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="the README whose benchmark table to write (default: README.md, for the committed cells only)",
    )
    return parser.parse_args(argv)


def main(argv: List[str]) -> int:
    args = parse(argv)
    if args.command == "run":
        from .runner import run

        return run(args)
    if args.command == "breakdown":
        from .breakdown import breakdown

        return breakdown(args)
    if args.command == "contention":
        from .contention import contention

        return contention(args)
    if args.command == "onnx":
        from .onnx import onnx_benchmark

        return onnx_benchmark(args)
    if args.command == "plan":
        from .runner import plan

        return plan(args)
    from .cells import CellError, MixedHashError
    from .report import write_report

    try:
        readme = args.readme or (REPO / "README.md" if args.cells_dir.resolve() == CELLS.resolve() else None)
        paths = write_report(args.cells_dir, args.md, args.img, args.json, allow_mixed=args.allow_mixed, readme=readme)
    except (MixedHashError, CellError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
