"""``spacy-bilstm-crf.NoEncoder.v1``: emission scores straight from the tok2vec."""

from typing import List

from spacy.util import registry
from thinc.api import Model, noop
from thinc.types import Floats2d


@registry.architectures("spacy-bilstm-crf.NoEncoder.v1")
def NoEncoder() -> Model[List[Floats2d], List[Floats2d]]:
    """No context encoder: the tagger is tok2vec -> emissions -> CRF (BERT-CRF)."""
    return noop()
