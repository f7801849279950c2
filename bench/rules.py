"""The rules every system is held to, in one place: warm-up, gradient
clipping, batch sizes and the throughput ceiling each system is compared to."""

from typing import Dict

# Warm-up: the configs' warm-up steps, but never more than this share of the
# steps of the budget's minimum (the "at most 10% of the steps").
MAX_WARMUP_SHARE = 0.10

# Gradient clipping, as Thinc's optimizer does it for every spaCy system
# (``grad_clip = 1.0`` in the configs): each parameter tensor's gradient is
# scaled down to L2 norm 1.0 when it is longer, separately per tensor. The
# softmax baseline clips the same way (``clip_per_tensor``), not by global norm.
GRAD_CLIP_RULE = "each parameter tensor's gradient clipped to L2 norm {clip} (Thinc's rule, applied to all systems)"

# Inference batch sizes (``nlp.pipe`` and the softmax's forward), per corpus.
INFER_BATCH_SIZE: Dict[str, int] = {"conll2003": 64, "msra": 256}

# The encoder-alone system that bounds each system's inference words/s; a
# system not listed here is bounded by ``encoder_only`` (the spaCy pipeline's
# tok2vec or transformer component alone).
CEILING: Dict[str, str] = {"softmax": "hf_encoder_only"}
DEFAULT_CEILING = "encoder_only"

# Sentences of train that ``init_nlp`` reads to initialize a pipeline (labels, actions).
INIT_SAMPLE = 2000


def warmup_steps(config_warmup: int, min_budget_steps: int) -> int:
    """The warm-up of every system: the config's, capped at 10% of the
    minimum budget's steps (at least 1 when the config has one)."""
    if config_warmup <= 0:
        return 0
    return max(1, min(int(config_warmup), int(MAX_WARMUP_SHARE * min_budget_steps)))


def ceiling_of(system: str) -> str:
    """The encoder-alone system that ``system``'s inference speed is divided by."""
    if system.endswith("encoder_only"):
        return system
    return CEILING.get(system, DEFAULT_CEILING)


def infer_batch_size(corpus: str) -> int:
    return INFER_BATCH_SIZE[corpus]
