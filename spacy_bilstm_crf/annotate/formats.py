"""Input and output formats, chosen by the path's suffix unless given."""

from pathlib import Path
from typing import Dict, Literal, cast

InputFormat = Literal["jsonl", "text", "parquet"]
OutputFormat = Literal["jsonl", "parquet"]

INPUT_FORMATS = ("jsonl", "text", "parquet")
OUTPUT_FORMATS = ("jsonl", "parquet")
INPUT_SUFFIXES: Dict[str, InputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".txt": "text",
    ".text": "text",
    ".parquet": "parquet",
    ".pq": "parquet",
}
OUTPUT_SUFFIXES: Dict[str, OutputFormat] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
}
PART_SUFFIX: Dict[OutputFormat, str] = {"jsonl": ".jsonl", "parquet": ".parquet"}


def input_format(path: Path, requested: str = "auto") -> InputFormat:
    """The format of INPUT: ``requested``, or its suffix; a folder holds Parquet files."""
    if requested != "auto":
        if requested not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {requested!r}: use one of {', '.join(INPUT_FORMATS)}")
        return cast(InputFormat, requested)
    if path.is_dir():
        return "parquet"
    found = INPUT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the input format from the suffix {path.suffix!r}; "
            f"use {', '.join(sorted(INPUT_SUFFIXES))} or --input-format"
        )
    return found


def output_format(path: Path, requested: str = "auto") -> OutputFormat:
    """The format of OUTPUT: ``requested``, or the suffix of the output folder's name."""
    if requested != "auto":
        if requested not in OUTPUT_FORMATS:
            raise ValueError(f"unknown output format {requested!r}: use one of {', '.join(OUTPUT_FORMATS)}")
        return cast(OutputFormat, requested)
    found = OUTPUT_SUFFIXES.get(path.suffix.lower())
    if found is None:
        raise ValueError(
            f"{path}: cannot tell the output format from the suffix {path.suffix!r}; "
            "name the output folder *.jsonl or *.parquet, or use --format"
        )
    return found
