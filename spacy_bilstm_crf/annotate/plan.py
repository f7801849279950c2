"""Cutting an input (a JSONL or text file, a Parquet file or folder) into shards."""

from dataclasses import replace
from pathlib import Path
from typing import List

from .fields import Fields
from .formats import InputFormat
from .jsonl import first_id_type
from .lines import line_ranges
from .parquet import id_type_of_column, parquet_files, row_group_ranges
from .shards import InputFile, Plan, Shard


def make_plan(path: Path, input_format: InputFormat, fields: Fields, shard_size: int) -> Plan:
    """The shards of ``path``: ``shard_size`` lines each for line-based files,
    whole row groups of at least ``shard_size`` rows for Parquet. Reads line-based
    files once, counting lines; reads only the metadata of Parquet files."""
    if shard_size < 1:
        raise ValueError(f"shard size must be at least 1, got {shard_size}")
    path = path.resolve()
    if not path.exists():
        raise ValueError(f"{path}: no such file or folder")
    shards: List[Shard] = []
    if input_format == "parquet":
        files = parquet_files(path)
        id_types = {file: id_type_of_column(file, fields) for file in files}
        if len(set(id_types.values())) > 1:
            raise ValueError(f"{path}: id column {fields.id!r} is an integer in some files and a string in others")
        fields = replace(fields, id_type=id_types[files[0]])
        for file in files:
            for start, stop, first_row, rows in row_group_ranges(file, shard_size):
                shards.append(Shard(len(shards), str(file), start, stop, first_row, rows, _next_position(shards)))
    else:
        if path.is_dir():
            raise ValueError(f"{path}: is a folder; only Parquet input can be a folder")
        files = [path]
        id_type = first_id_type(path, fields) if input_format == "jsonl" else "int"
        fields = replace(fields, id_type=id_type)
        for lines in line_ranges(path, shard_size):
            shard = Shard(
                len(shards), str(path), lines.start, lines.stop, lines.first_line, lines.n_lines, _next_position(shards)
            )
            shards.append(shard)
    inputs = tuple(InputFile(str(file), file.stat().st_size, file.stat().st_mtime_ns) for file in files)
    return Plan(input_format, inputs, tuple(shards), fields)


def _next_position(shards: List[Shard]) -> int:
    return shards[-1].first_position + shards[-1].size if shards else 0
