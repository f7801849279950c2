"""Estimated hours of a run's cells, from the figures of the old single-seed
run (``bench/results/full-20261125-123919-9c438061.json``: training and
test-pass words/s per system, init seconds, corpus sizes on 2 quiet cores).

A training cell costs its training words at the old training rate, plus
every dev evaluation and the test pass at the old test-pass rate, plus
start-up. Its minimum assumes training stops at the budget's minimum, its
maximum that it runs to the cap. Systems the old run lacked take the rate of
their nearest relative (the IDCNN variants: ``idcnn_crf``'s, which makes the
wider ``idcnn_sized`` an underestimate).
"""

import math
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from .common import RESULTS, read_json
from .specs import GRID, MAIN, MICRO, SPEED, CellKey, CorpusSpec

OLD_RUN = RESULTS / "full-20261125-123919-9c438061.json"
RELATIVES = {"idcnn_strubell": "idcnn_crf", "idcnn_sized": "idcnn_crf"}
SPEED_MINUTES_PER_SYSTEM = 0.6  # training bursts and inference rounds of one system, 6 rounds
MICRO_MINUTES = {"crf_scaling": 1.5, "heads": 0.5}
SAVE_SECONDS = 2.0  # one best-checkpoint save


class OldRun:
    """Rates and sizes from the old run's JSON."""

    def __init__(self, path: Path = OLD_RUN) -> None:
        self.data: Dict[str, Any] = read_json(path) if path.exists() else {}

    def system(self, corpus: str, name: str) -> Dict[str, Any]:
        systems = self.data.get("corpora", {}).get(corpus, {}).get("systems", {})
        return systems.get(RELATIVES.get(name, name)) or {}

    def split_words(self, corpus: str, split: str) -> Optional[float]:
        info = self.data.get("corpora", {}).get(corpus, {}).get("data", {}).get("splits", {}).get(split)
        if not info:
            return None
        return info["words"] * info["sentences_available"] / max(info["sentences"], 1)


def training_seconds(old: OldRun, corpus: CorpusSpec, key: CellKey) -> Optional[Tuple[float, float]]:
    """(min, max) seconds of a grid or main cell."""
    entry = old.system(corpus.name, key.system)
    train_rate, pass_rate = entry.get("train_words_per_s"), entry.get("test_pass_words_per_s")
    epoch, dev, test = (old.split_words(corpus.name, s) for s in ("train", "dev", "test"))
    if not (train_rate and pass_rate and epoch and dev and test):
        return None
    rule = corpus.grid if key.stage == GRID else corpus.main
    out = []
    for epochs in (rule.min_epochs, rule.max_epochs):
        evals = max(1, math.ceil(epochs / rule.eval_every_epochs))
        seconds = epochs * epoch / train_rate + evals * (dev / pass_rate + SAVE_SECONDS) + test / pass_rate
        out.append(seconds + 2 * float(entry.get("init_seconds") or 5.0))
    return out[0], out[1]


def cell_seconds(
    old: OldRun, corpus: Optional[CorpusSpec], key: CellKey, n_systems: int
) -> Optional[Tuple[float, float]]:
    if key.stage in (GRID, MAIN):
        return training_seconds(old, corpus, key) if corpus is not None else None
    if key.stage == SPEED:
        minutes = SPEED_MINUTES_PER_SYSTEM * n_systems * (2.0 if key.corpus == "conll2003" else 1.0)
        return 60 * minutes, 60 * minutes
    if key.stage == MICRO:
        minutes = MICRO_MINUTES.get(key.system, 1.0)
        return 60 * minutes, 60 * minutes
    return None
