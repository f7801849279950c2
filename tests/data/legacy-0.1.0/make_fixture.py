"""Save small pipelines with the code of 0.1.0 (commit d855cd4) as test fixtures."""
import json, sys
from pathlib import Path
import spacy
from spacy.training import Example
from thinc.api import fix_random_seed, Adam
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from tests.tiny_data import EN_TRAIN

TOK2VEC = {"@architectures": "spacy.HashEmbedCNN.v2", "pretrained_vectors": None, "width": 16, "depth": 1,
           "embed_size": 300, "window_size": 1, "maxout_pieces": 2, "subword_features": True}
ENC = {
 "bilstm": {"@architectures": "spacy-bilstm-crf.BiLSTMEncoder.v1", "hidden_width": 8, "dropout": 0.0},
 "idcnn_v1": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v1", "width": 16, "iterations": 2, "dropout": 0.0},
 "idcnn_v2": {"@architectures": "spacy-bilstm-crf.IDCNNEncoder.v2", "width": 16, "iterations": 2, "dropout": 0.0},
}
TEXTS = ["Alice lives in Paris", "Bob works at Google in London", "Google hired Alice", "New York is big",
         "Alice and Bob visited London and Paris", "Nothing to see here", "", "Paris"]
out = Path(__file__).resolve().parent
expected = {"commit": "d855cd4", "texts": TEXTS, "pipelines": {}}
for name, enc in ENC.items():
    for scheme in (["BILUO", "BIO"] if name == "bilstm" else ["BILUO"]):
        fix_random_seed(0)
        nlp = spacy.blank("en")
        nlp.add_pipe("crf_ner", config={"scheme": scheme, "model": {"@architectures": "spacy-bilstm-crf.CRFTagger.v1", "tok2vec": TOK2VEC, "encoder": enc}})
        exs = [Example.from_dict(nlp.make_doc(t), {"entities": e}) for t, e in EN_TRAIN]
        opt = nlp.initialize(lambda: exs)
        for _ in range(15):
            nlp.update(exs, sgd=opt)
        key = f"{name}-{scheme.lower()}"
        nlp.to_disk(out / key)
        ents = [[[e.start_char, e.end_char, e.label_] for e in doc.ents] for doc in nlp.pipe(TEXTS)]
        expected["pipelines"][key] = ents
        print(key, ents)
(out / "expected.json").write_text(json.dumps(expected, indent=1, ensure_ascii=False) + "\n")
