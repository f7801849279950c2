"""Pipeline folders that are uninitialized, damaged or disagree with their
config: they load, or fail with one clear line naming the component and file."""

import json
import shutil
from pathlib import Path

import pytest
import spacy
from thinc.api import Config

from .pipelines import ENCODERS, entities, make_nlp, train
from .tiny_data import EN_TRAIN

BILSTM = ENCODERS["bilstm"]  # the encoder of the saved pipeline


def test_uninitialized_pipeline_saves_loads_and_trains(tmp_path):
    nlp = make_nlp(head_lr_scale=5.0)
    nlp.get_pipe("crf_ner").add_label("PER")
    nlp.to_disk(tmp_path / "blank")
    loaded = spacy.load(tmp_path / "blank")
    ner = loaded.get_pipe("crf_ner")
    assert ner.labels == ("PER",) and not ner.is_initialized
    losses = train(loaded, steps=12)
    assert ner.labels == ("PER", "LOC", "ORG")  # the saved label first, then those of the data
    assert losses[-1] < losses[0] / 2
    # and once trained it saves and loads as any pipeline
    loaded.to_disk(tmp_path / "trained")
    texts = [text for text, _ in EN_TRAIN]
    again = spacy.load(tmp_path / "trained")
    assert [entities(d) for d in again.pipe(texts)] == [entities(d) for d in loaded.pipe(texts)]


# --- damaged pipeline folders ---------------------------------------------------


def damaged_copy(saved: Path, tmp_path: Path) -> Path:
    path = tmp_path / "damaged"
    shutil.copytree(saved, path)
    return path


def load_error(path: Path) -> str:
    with pytest.raises(ValueError) as error:
        spacy.load(path)
    message = str(error.value)
    assert "'crf_ner'" in message
    assert "size mismatch" not in message and "state_dict" not in message
    return message


def test_truncated_model_file(saved_pipeline, tmp_path):
    path = damaged_copy(saved_pipeline, tmp_path)
    model = path / "crf_ner" / "model"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    message = load_error(path)
    assert str(model) in message and "damaged" in message


def test_missing_cfg_file(saved_pipeline, tmp_path):
    path = damaged_copy(saved_pipeline, tmp_path)
    (path / "crf_ner" / "cfg").unlink()
    message = load_error(path)
    assert message == f"Cannot load component 'crf_ner': {path / 'crf_ner' / 'cfg'} is missing."


def test_cfg_with_fewer_labels_than_the_weights(saved_pipeline, tmp_path):
    path = damaged_copy(saved_pipeline, tmp_path)
    cfg_path = path / "crf_ner" / "cfg"
    cfg = json.loads(cfg_path.read_text(encoding="utf8"))
    assert cfg["labels"] == ["LOC", "ORG", "PER"]
    cfg["labels"] = ["LOC", "ORG"]
    cfg_path.write_text(json.dumps(cfg), encoding="utf8")
    message = load_error(path)
    assert str(cfg_path) in message and "2 labels" in message and "13 tags" in message


@pytest.mark.parametrize(
    "encoder,saved_as,config_builds",
    [
        (ENCODERS["idcnn"], "bilstm_encoder(hidden_width=8, depth=1)", "idcnn_encoder(width=16,"),
        (ENCODERS["none"], "[crf, bilstm_encoder(hidden_width=8, depth=1)]", "the config builds [crf]."),
        ({**BILSTM, "hidden_width": 12}, "hidden_width=8", "hidden_width=12"),
        ({**BILSTM, "depth": 2}, "depth=1", "depth=2"),
    ],
    ids=["idcnn", "none", "wider", "deeper"],
)
def test_config_naming_another_encoder(saved_pipeline, tmp_path, encoder, saved_as, config_builds):
    path = damaged_copy(saved_pipeline, tmp_path)
    config = Config().from_disk(path / "config.cfg", interpolate=False)
    config["components"]["crf_ner"]["model"]["encoder"] = encoder
    config.to_disk(path / "config.cfg")
    message = load_error(path)
    assert str(path / "crf_ner" / "model") in message
    assert saved_as in message and config_builds in message
