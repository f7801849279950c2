"""Writing one output part file in either output format, buffered."""

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from .fields import Fields
from .formats import OutputFormat
from .jsonl import JsonlPartWriter
from .parquet import ParquetPartWriter, output_schema

BUFFER_RECORDS = 1000


class PartWriter:
    """Collects output records and writes them to ``path``, which is created
    with the first record; ``close`` returns the path, or None if no record came."""

    def __init__(self, path: Path, output_format: OutputFormat, fields: Fields, with_confidence: bool) -> None:
        self.path = path
        self.output_format = output_format
        self.fields = fields
        self.with_confidence = with_confidence
        self.count = 0
        self._buffer: List[Dict[str, Any]] = []
        self._writer: Optional[Union[JsonlPartWriter, ParquetPartWriter]] = None

    def add(self, record: Dict[str, Any]) -> None:
        self._buffer.append(record)
        self.count += 1
        if len(self._buffer) >= BUFFER_RECORDS:
            self._flush()

    def close(self) -> Optional[Path]:
        self._flush()
        if self._writer is None:
            return None
        self._writer.close()
        fsync_path(self.path)
        return self.path

    def _flush(self) -> None:
        if not self._buffer:
            return
        if self._writer is None:
            if self.output_format == "jsonl":
                self._writer = JsonlPartWriter(self.path)
            else:
                self._writer = ParquetPartWriter(self.path, output_schema(self.fields, self.with_confidence))
        self._writer.write(self._buffer)
        self._buffer = []


def fsync_path(path: Path) -> None:
    """Flush a closed file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
