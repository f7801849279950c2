"""The ``crf_ner`` pipeline component: a CRF entity recognizer."""

from itertools import islice
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple, cast

import numpy
import srsly
import torch
from spacy import util
from spacy.errors import Errors
from spacy.language import Language
from spacy.pipeline import TrainablePipe
from spacy.pipeline.ner import ner_score
from spacy.tokens import Doc, Span
from spacy.training import Example, validate_examples, validate_get_examples
from spacy.vocab import Vocab
from thinc.api import Config, Model, Optimizer, set_dropout_rate
from thinc.types import Floats2d, Ints1d

from ..layers.crf import crf_decode
from ..layers.lazy_torch import build_lazy_layers, lazy_layer_dims, torch_module
from ..models.crf_tagger import get_crf
from ..modules.crf import ConditionalRandomField
from ..optim import finish_update_scaled
from ..tag_scheme import (
    OUTSIDE,
    allowed_transitions,
    biluo_to_scheme,
    make_tags,
    spans_to_tags,
    split_tag,
    tag_index,
    tags_to_spans,
    validate_label,
    validate_scheme,
)

UNKNOWN_TAG = -1

DEFAULT_CRF_NER_MODEL = """
[model]
@architectures = "spacy-bilstm-crf.CRFTagger.v1"

[model.tok2vec]
@architectures = "spacy.HashEmbedCNN.v2"
pretrained_vectors = null
width = 96
depth = 4
embed_size = 2000
window_size = 1
maxout_pieces = 3
subword_features = true

[model.encoder]
@architectures = "spacy-bilstm-crf.BiLSTMEncoder.v1"
hidden_width = 128
depth = 1
dropout = 0.1
"""
DEFAULT_MODEL = Config().from_str(DEFAULT_CRF_NER_MODEL)["model"]


@Language.factory(
    "crf_ner",
    assigns=["doc.ents", "token.ent_iob", "token.ent_type"],
    default_config={
        "model": DEFAULT_MODEL,
        "scheme": "BILUO",
        "overwrite_ents": False,
        "head_lr_scale": 1.0,
        "scorer": {"@scorers": "spacy.ner_scorer.v1"},
    },
    default_score_weights={"ents_f": 1.0, "ents_p": 0.0, "ents_r": 0.0, "ents_per_type": None},
)
def make_crf_ner(
    nlp: Language,
    name: str,
    model: Model[List[Doc], List[Floats2d]],
    scheme: str,
    overwrite_ents: bool,
    head_lr_scale: float,
    scorer: Optional[Callable],
) -> "CRFEntityRecognizer":
    """Create a CRF entity recognizer.

    model (Model[List[Doc], List[Floats2d]]): A CRF tagger
        (``spacy-bilstm-crf.CRFTagger.v1``).
    scheme (str): Tag scheme of the CRF, "BILUO" or "BIO".
    overwrite_ents (bool): Replace entities already set on the doc instead of
        keeping them and predicting around them.
    head_lr_scale (float): Factor on the optimizer's learning rate for this
        component's own layers (encoder, emissions, CRF); the tok2vec keeps
        the optimizer's rate.
    scorer (Optional[Callable]): The scoring method.
    """
    return CRFEntityRecognizer(
        nlp.vocab,
        model,
        name,
        scheme=scheme,
        overwrite_ents=overwrite_ents,
        head_lr_scale=head_lr_scale,
        scorer=scorer,
    )


class CRFEntityRecognizer(TrainablePipe):
    """Named entity recognizer with a linear-chain CRF over BILUO or BIO tags.

    Training: the loss is the CRF negative log-likelihood of the gold tags.
    Tokens whose gold annotation is missing (no entity information, or an
    entity that cannot be aligned to the predicted tokenization) are
    marginalised out, so they add no loss; they are never taken as ``O``.

    Prediction: Viterbi decoding restricted to valid tag sequences. Entities
    already on the doc are kept and predicted around (their tokens keep their
    tags), unless ``overwrite_ents`` is set.
    """

    def __init__(
        self,
        vocab: Vocab,
        model: Model[List[Doc], List[Floats2d]],
        name: str = "crf_ner",
        *,
        scheme: str = "BILUO",
        overwrite_ents: bool = False,
        head_lr_scale: float = 1.0,
        scorer: Optional[Callable] = ner_score,
    ) -> None:
        validate_scheme(scheme)
        if not head_lr_scale > 0:
            raise ValueError(f"head_lr_scale must be positive, got {head_lr_scale}.")
        self.vocab = vocab
        self.model = model
        self.name = name
        self.scorer = scorer
        self.cfg: Dict = {
            "labels": [],
            "scheme": scheme,
            "overwrite_ents": overwrite_ents,
            "head_lr_scale": head_lr_scale,
            "torch_layer_dims": [],
        }

    @property
    def labels(self) -> Tuple[str, ...]:
        """The entity labels, in the order of the tag inventory."""
        return tuple(self.cfg["labels"])

    @property
    def label_data(self) -> List[str]:
        return list(self.labels)

    @property
    def tags(self) -> List[str]:
        """The CRF's tags: ``O``, then a tag per prefix of the scheme per label."""
        return make_tags(self.labels, self.cfg["scheme"])

    @property
    def is_initialized(self) -> bool:
        return bool(get_crf(self.model).layers)

    def add_label(self, label: str) -> int:
        """Add an entity label; 1 if it is new, 0 if it was there."""
        validate_label(label)
        if label in self.labels:
            return 0
        if self.is_initialized:
            raise ValueError(
                f"Cannot add label {label!r} to component {self.name!r}: it is already "
                "initialized and its CRF cannot grow. Give all labels before initialize()."
            )
        self.cfg["labels"].append(label)
        self.vocab.strings.add(label)
        return 1

    def initialize(
        self,
        get_examples: Callable[[], Iterable[Example]],
        *,
        nlp: Optional[Language] = None,
        labels: Optional[Iterable[str]] = None,
    ) -> None:
        """Set the labels (given, or found in the examples) and initialize the
        model on a sample of the examples."""
        validate_get_examples(get_examples, "CRFEntityRecognizer.initialize")
        if labels is not None:
            for label in labels:
                self.add_label(label)
        else:
            found = {ent.label_ for eg in get_examples() for ent in eg.reference.ents}
            for label in sorted(found):
                self.add_label(label)
        if not self.labels:
            raise ValueError(
                f"Component {self.name!r} has no entity labels: the training examples hold "
                "no entities and no labels were given to initialize()."
            )
        n_tags = len(self.tags)
        if self.model.has_dim("nO") and self.model.get_dim("nO") != n_tags:
            raise ValueError(
                f"Component {self.name!r}: the model's nO is {self.model.get_dim('nO')}, but "
                f"{len(self.labels)} labels in the {self.cfg['scheme']} scheme make {n_tags} tags. "
                "Leave nO unset in the config; it is inferred from the labels."
            )
        doc_sample = [eg.x for eg in islice(get_examples(), 10)]
        label_sample = [self.model.ops.alloc2f(len(doc), n_tags) for doc in doc_sample]
        self.model.initialize(X=doc_sample, Y=label_sample)
        self._apply_constraints()
        self.cfg["torch_layer_dims"] = lazy_layer_dims(self.model)

    def predict(self, docs: Iterable[Doc]) -> List[Ints1d]:
        """Tag ids of the best valid tag sequence of each doc."""
        docs = list(docs)
        if not any(len(doc) for doc in docs):
            return [self.model.ops.alloc1i(len(doc)) for doc in docs]
        scores = self.model.predict(docs)
        constraints = None if self.cfg["overwrite_ents"] else [self._preset_tags(doc) for doc in docs]
        return crf_decode(get_crf(self.model), scores, constraints)

    def set_annotations(self, docs: Iterable[Doc], tag_ids: Sequence[Ints1d]) -> None:
        """Set ``doc.ents`` from predicted tag ids; tokens outside entities get ``O``."""
        tags = self.tags
        scheme = self.cfg["scheme"]
        for doc, ids in zip(docs, tag_ids):
            spans = tags_to_spans([tags[i] for i in ids.tolist()], scheme)
            ents = [Span(doc, start, end, label=label) for start, end, label in spans]
            if not self.cfg["overwrite_ents"]:
                preset = list(doc.ents)
                seen = {(e.start, e.end, e.label_) for e in preset}
                ents = preset + [e for e in ents if (e.start, e.end, e.label_) not in seen]
            doc.set_ents(ents, default="outside")

    def update(
        self,
        examples: Iterable[Example],
        *,
        drop: float = 0.0,
        sgd: Optional[Optimizer] = None,
        losses: Optional[Dict[str, float]] = None,
    ) -> Dict[str, float]:
        """Learn from a batch of examples; add the CRF loss to ``losses``."""
        if losses is None:
            losses = {}
        losses.setdefault(self.name, 0.0)
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.update")
        if not any(len(eg.predicted) for eg in examples):
            return losses
        set_dropout_rate(self.model, drop)
        scores, backprop_scores = self.model.begin_update([eg.predicted for eg in examples])
        loss, d_scores = self.get_loss(examples, scores)
        backprop_scores(d_scores)
        if sgd not in (None, False):
            self.finish_update(sgd)
        losses[self.name] += loss
        return losses

    def get_loss(self, examples: Iterable[Example], scores: List[Floats2d]) -> Tuple[float, List[Floats2d]]:
        """CRF negative log-likelihood of the gold tags, summed over the batch,
        and its gradient with respect to the emission scores. The gradient of
        the CRF's own parameters is accumulated for the next update."""
        examples = list(examples)
        validate_examples(examples, "CRFEntityRecognizer.get_loss")
        gold = [self._gold_tags(eg, i) for i, eg in enumerate(examples)]
        nll, backprop = get_crf(self.model).begin_update((scores, gold))
        loss = float(nll.sum(keepdims=False))
        if numpy.isnan(loss):
            raise ValueError(Errors.E910.format(name=self.name))
        d_scores = backprop(self.model.ops.xp.ones(len(nll), dtype="f"))
        return loss, cast(List[Floats2d], d_scores)

    def finish_update(self, sgd: Optimizer) -> None:
        """Update the weights, the head's at ``head_lr_scale`` times the rate."""
        finish_update_scaled(self.model, sgd, self.cfg["head_lr_scale"], unscaled=self.model.get_ref("tok2vec"))

    def from_bytes(self, bytes_data: bytes, *, exclude: Iterable[str] = tuple()) -> "CRFEntityRecognizer":
        self._validate_serialization_attrs()
        deserializers = {
            "cfg": lambda b: self.cfg.update(srsly.json_loads(b)),
            "vocab": lambda b: self.vocab.from_bytes(b, exclude=exclude),
            "model": self._load_model,
        }
        util.from_bytes(bytes_data, deserializers, exclude)
        return self

    def from_disk(self, path: Path, *, exclude: Iterable[str] = tuple()) -> "CRFEntityRecognizer":
        self._validate_serialization_attrs()
        deserializers: Dict[str, Callable[[Path], Any]] = {
            "cfg": lambda p: self.cfg.update(srsly.read_json(p)),
            "vocab": lambda p: self.vocab.from_disk(p, exclude=exclude),
            "model": lambda p: self._load_model(Path(p).read_bytes()),
        }
        util.from_disk(path, deserializers, exclude)
        return self

    def _load_model(self, data: bytes) -> None:
        # The torch layers are built once their sizes are known: build them
        # from the saved sizes (cfg is read first) before loading weights.
        build_lazy_layers(self.model, self.cfg["torch_layer_dims"])
        try:
            self.model.from_bytes(data)
        except AttributeError:
            raise ValueError(Errors.E149) from None

    def _apply_constraints(self) -> None:
        transitions, start, end = allowed_transitions(self.tags, self.cfg["scheme"])
        crf = cast(ConditionalRandomField, torch_module(get_crf(self.model)))
        crf.set_constraints(torch.from_numpy(transitions), torch.from_numpy(start), torch.from_numpy(end))

    def _preset_tags(self, doc: Doc) -> Ints1d:
        """Tag ids that preset entities fix (-1 elsewhere). Entities of labels
        the component does not know keep their tokens outside its entities."""
        index = tag_index(self.labels, self.cfg["scheme"])
        fixed = numpy.full((len(doc),), UNKNOWN_TAG, dtype="int32")
        for ent in doc.ents:
            if ent.label_ in self.labels:
                tags = spans_to_tags(len(ent), [(0, len(ent), ent.label_)], self.cfg["scheme"])
                fixed[ent.start : ent.end] = [index[tag] for tag in tags]
            else:
                fixed[ent.start : ent.end] = index[OUTSIDE]
        return self.model.ops.asarray1i(cast(Ints1d, fixed))

    def _gold_tags(self, example: Example, position: int) -> Ints1d:
        """Gold tag id per predicted token; -1 where the annotation is missing."""
        index = tag_index(self.labels, self.cfg["scheme"])
        gold = numpy.full((len(example.predicted),), UNKNOWN_TAG, dtype="int32")
        for i, tag in enumerate(example.get_aligned_ner()):
            if tag in (None, "", "-"):
                continue
            label = split_tag(tag)[1]
            if label is not None and label not in self.labels:
                raise ValueError(
                    f"Training example {position} ({example.reference.text[:60]!r}) has an entity "
                    f"labelled {label!r}, which is not a label of component {self.name!r} "
                    f"{list(self.labels)}. Initialize the component with the labels of the data."
                )
            gold[i] = index[biluo_to_scheme(tag, self.cfg["scheme"])]
        return self.model.ops.asarray1i(cast(Ints1d, gold))
