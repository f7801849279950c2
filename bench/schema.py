"""The results JSON's required keys; ``validate`` raises if one is missing."""

from typing import Any, Dict, List, Optional, Sequence

SCHEMA_VERSION = 1

TOP_KEYS = (
    "schema_version",
    "mode",
    "commit",
    "date",
    "machine",
    "settings",
    "corpora",
    "crf_bench",
    "targets",
    "duration_seconds",
)
MACHINE_KEYS = ("cpu_model", "logical_cores", "torch_threads", "versions")
SYSTEM_KEYS = (
    "f1",
    "precision",
    "recall",
    "train_words_per_s",
    "infer_words_per_s",
    "encoder_only_words_per_s",
    "peak_rss_mb",
    "train_seconds",
    "words_seen",
)
# Must be numbers for a trained system (they may be null for an encoder alone).
TRAINED_NUMBERS = (*SYSTEM_KEYS, "infer_over_encoder", "peak_rss_train_mb", "peak_rss_infer_mb")
# Null for a trained system whose encoder-alone ceiling was not part of the run.
RATIO_NUMBERS = ("encoder_only_words_per_s", "infer_over_encoder")
TRAINED_KEYS = ("per_type", "seqeval", "seqeval_agrees", "learning_curve", "latency_ms", "infer_words_per_s_spread")
ENCODER_NUMBERS = ("infer_words_per_s", "peak_rss_mb")


class SchemaError(ValueError):
    pass


def _missing(entry: Dict[str, Any], keys: Sequence[str], where: str) -> List[str]:
    return [f"{where}.{key}" for key in keys if key not in entry]


def _not_number(entry: Dict[str, Any], keys: Sequence[str], where: str) -> List[str]:
    return [
        f"{where}.{key} (not a number: {entry.get(key)!r})"
        for key in keys
        if key in entry and not isinstance(entry[key], (int, float))
    ]


def validate(
    results: Dict[str, Any],
    expected: Dict[str, Sequence[str]],
    trained: Sequence[str],
    micro: bool = True,
    ceilings: Optional[Dict[str, str]] = None,
) -> None:
    """Raise ``SchemaError`` listing every required key that is missing or
    null. ``expected`` maps each corpus to the systems that must be there;
    ``micro``: the CRF-alone and heads-alone figures must be there too;
    ``ceilings`` maps a system to its encoder-alone system (default
    ``encoder_only``): its ratio figures are required only if that ran."""
    ceilings = ceilings or {}
    problems = _missing(results, TOP_KEYS, "results")
    problems += _missing(results.get("machine", {}), MACHINE_KEYS, "machine")
    for corpus, systems in expected.items():
        entry = results.get("corpora", {}).get(corpus)
        if entry is None:
            problems.append(f"corpora.{corpus}")
            continue
        for system in systems:
            where = f"corpora.{corpus}.systems.{system}"
            data = entry.get("systems", {}).get(system)
            if data is None:
                problems.append(where)
                continue
            if data.get("error"):
                problems.append(f"{where} failed: {data['error']}")
                continue
            if system in trained:
                numbers = TRAINED_NUMBERS
                if ceilings.get(system, "encoder_only") not in systems:
                    numbers = tuple(key for key in numbers if key not in RATIO_NUMBERS)
                problems += _missing(data, (*TRAINED_NUMBERS, *TRAINED_KEYS), where)
                problems += _not_number(data, numbers, where)
                if not data.get("learning_curve"):
                    problems.append(f"{where}.learning_curve (empty)")
            else:
                problems += _missing(data, SYSTEM_KEYS, where)
                problems += _not_number(data, ENCODER_NUMBERS, where)
    crf = results.get("crf_bench", {})
    if micro:
        for key in ("crf", "heads"):
            if key not in crf:
                problems.append(f"crf_bench.{key}")
        if "crf" in crf:
            problems += _missing(crf["crf"], ("rows", "fits", "linear"), "crf_bench.crf")
    if problems:
        raise SchemaError("results JSON is incomplete:\n  " + "\n  ".join(problems))
