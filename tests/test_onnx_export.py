"""``spacy-bilstm-crf export``: a pipeline whose crf_ner runs on onnxruntime
and numpy, with the torch pipeline's entities, confidences and k-best; its
saving, loading and errors; loading without torch.

Float exports must give the torch pipeline's entities exactly, on the tiny
data and on real sentences (MSRA and CoNLL, where ../shared/data has them);
int8 exports are measured in bench/ (python -m bench onnx), not here.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Iterator, List

import numpy
import pytest
import spacy
import srsly
from spacy.language import Language

from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.export import ExportError, export_pipeline

from .pipelines import (
    char_entities,
    cnn_tok2vec,
    crf_tagger,
    inline_nlp,
    make_nlp,
    train,
    venv_with_package,
    wheel_metadata,
)
from .tiny_data import EN_TRAIN, SHARED_DATA, ZH_TRAIN

onnxruntime = pytest.importorskip("onnxruntime")
# Every test here exports (a torch.onnx trace in a child process, about 10 s) or
# loads an export: the slow tier. tests/test_onnx_runtime.py tests the runtime's
# layers on hand-built graphs in the fast tier.
pytestmark = pytest.mark.slow

EN_TEXTS = [text for text, _ in EN_TRAIN] + [
    "Alice moved from Paris to London to work at Google.",
    "  Bob  and Alice\n\nlive in New York  ",
    "",
    "Paris",
]
ZH_TEXTS = [text for text, _ in ZH_TRAIN] + ["张三和李四在北京的微软工作。", "", "北"]
# Real sentences, where the corpora are beside the checkout.
MSRA_TEST = SHARED_DATA / "msra" / "test.txt"
CONLL_TEST = SHARED_DATA / "conll2003" / "test.txt"


def column_sentences(path: Path, limit: int, join: str) -> List[str]:
    """The first ``limit`` sentences of a token-per-line file, their tokens joined by ``join``."""
    sentences: List[str] = []
    tokens: List[str] = []
    for line in path.read_text(encoding="utf8").splitlines():
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if tokens:
                sentences.append(join.join(tokens))
                tokens = []
            if len(sentences) == limit:
                break
            continue
        tokens.append(fields[0])
    return sentences


def real_texts(lang: str) -> List[str]:
    if lang == "zh" and MSRA_TEST.is_file():
        return column_sentences(MSRA_TEST, 200, "")
    if lang != "zh" and CONLL_TEST.is_file():
        return column_sentences(CONLL_TEST, 200, " ")
    return []


def trained(encoder: str = "bilstm", lang: str = "xx", scheme: str = "BILUO", **settings) -> Language:
    nlp = make_nlp(encoder, lang=lang, scheme=scheme, **settings)
    train(nlp, steps=40)
    return nlp


def exported(nlp: Language, path: Path, quantize: bool = False) -> Language:
    export_pipeline(nlp, path, quantize=quantize)
    return spacy.load(path)


def assert_same_entities(torch_nlp: Language, onnx_nlp: Language, texts: List[str]) -> None:
    expected = [char_entities(doc) for doc in torch_nlp.pipe(texts)]
    found = [char_entities(doc) for doc in onnx_nlp.pipe(texts)]
    assert found == expected


@pytest.fixture(scope="module")
def english(saved_pipeline: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """The suite's trained English BiLSTM pipeline (loaded from its folder, with
    confidences switched on) and its float export (likewise)."""
    nlp = spacy.load(saved_pipeline)
    path = tmp_path_factory.mktemp("onnx") / "exported"
    onnx_nlp = exported(nlp, path)
    for pipeline in (nlp, onnx_nlp):
        pipeline.get_pipe("crf_ner").spans_key = "ents_scored"
        pipeline.get_pipe("crf_ner").threshold = 0.1
    assert any(doc.ents for doc in nlp.pipe(EN_TEXTS)), "the pipeline finds nothing: parity would be empty"
    yield nlp, onnx_nlp, path


def test_the_export_sets_the_same_entities_confidences_and_kbest(english) -> None:
    torch_nlp, onnx_nlp, _ = english
    assert onnx_nlp.get_pipe("crf_ner").is_exported
    assert_same_entities(torch_nlp, onnx_nlp, EN_TEXTS + real_texts("en"))
    for text in EN_TEXTS[:6]:
        expected, found = torch_nlp(text), onnx_nlp(text)
        assert [(s.start, s.end, s.label_) for s in found.spans["ents_scored"]] == [
            (s.start, s.end, s.label_) for s in expected.spans["ents_scored"]
        ]
        numpy.testing.assert_allclose(
            found.spans["ents_scored"].attrs["scores"], expected.spans["ents_scored"].attrs["scores"], atol=1e-5
        )
        torch_best = torch_nlp.get_pipe("crf_ner").kbest(torch_nlp(text, disable=["crf_ner"]), k=5)
        onnx_best = onnx_nlp.get_pipe("crf_ner").kbest(onnx_nlp(text, disable=["crf_ner"]), k=5)
        assert [spans for spans, _ in onnx_best] == [spans for spans, _ in torch_best]
        numpy.testing.assert_allclose([p for _, p in onnx_best], [p for _, p in torch_best], atol=1e-5)


def test_the_exported_component_holds_a_graph_and_arrays_not_torch(english) -> None:
    _, onnx_nlp, path = english
    config = (path / "config.cfg").read_text(encoding="utf8")
    assert '@architectures = "spacy-bilstm-crf.OnnxCRFTagger.v1"' in config
    assert "BiLSTMEncoder" not in config
    assert json.loads((path / "crf_ner" / "cfg").read_text(encoding="utf8"))["torch_layer_dims"] == []
    meta = srsly.read_json(path / "meta.json")
    assert meta["spacy_bilstm_crf_export"] == {"components": ["crf_ner"], "quantized": False, "onnx_opset": 18}
    assert any(req.startswith("spacy-bilstm-crf[onnx]") for req in meta["requirements"])
    scorer = onnx_nlp.get_pipe("crf_ner").model.get_ref("scorer")
    session = scorer.attrs["onnx_graph"].session()
    # The graph starts at the tok2vec's dense tail: its input is the 4 embedding tables' (NORM, PREFIX,
    # SUFFIX, SHAPE) concatenated rows, 4 x 16 wide; the Thinc part of the tok2vec gives them.
    assert onnx_nlp.config["components"]["crf_ner"]["model"]["tok2vec_layers_in_graph"] == 3
    assert [(i.name, i.shape) for i in session.get_inputs()] == [
        ("vectors", ["batch", "length", 64]),
        ("lengths", ["batch"]),
    ]
    assert [(o.name, o.shape) for o in session.get_outputs()] == [("scores", ["batch", "length", 13])]
    arrays = onnx_nlp.get_pipe("crf_ner").transition_scores()
    assert sorted(arrays) == sorted(english[0].get_pipe("crf_ner").transition_scores())


def test_an_exported_pipeline_round_trips_through_bytes_and_disk(english, tmp_path: Path) -> None:
    _, onnx_nlp, path = english
    data = spacy.load(path).to_bytes()
    reloaded = spacy.blank("xx").from_config(spacy.load(path).config)
    assert reloaded.from_bytes(data).to_bytes() == data
    reloaded.to_disk(tmp_path / "again")
    again = spacy.load(tmp_path / "again")
    assert again.get_pipe("crf_ner").model.to_bytes() == onnx_nlp.get_pipe("crf_ner").model.to_bytes()
    assert [char_entities(d) for d in again.pipe(EN_TEXTS)] == [char_entities(d) for d in onnx_nlp.pipe(EN_TEXTS)]


def test_explain_refuses_an_export_and_says_what_to_explain(english) -> None:
    from spacy_bilstm_crf.explain.trace import explain

    with pytest.raises(ValueError, match="is an export \\(ONNX\\).*explain the torch pipeline"):
        explain(english[1], EN_TEXTS[0])


def test_an_exported_pipeline_predicts_only(english) -> None:
    _, onnx_nlp, _ = english
    from spacy.training import Example

    example = Example.from_dict(onnx_nlp.make_doc(EN_TRAIN[0][0]), {"entities": EN_TRAIN[0][1]})
    with pytest.raises(ValueError, match="exported \\(ONNX\\) model, which predicts only: update"):
        onnx_nlp.update([example])
    with pytest.raises(ValueError, match="predicts only: initialize"):
        onnx_nlp.initialize(lambda: [example])


@pytest.mark.parametrize(
    "damage, message",
    [
        ("graph", "Cannot load component 'crf_ner' from .*crf_ner.model: not a valid ONNX graph"),
        ("crf", "Cannot load component 'crf_ner' from .*crf_ner.model: its CRF: Not a valid CRF state"),
        ("other_graph", "Cannot load component 'crf_ner' from .*crf_ner.model: its ONNX graph gives 5 scores"),
    ],
)
def test_a_damaged_or_mismatched_export_gets_a_one_line_error_naming_the_file(
    english, tmp_path: Path, damage: str, message: str
) -> None:
    _, onnx_nlp, _ = english
    onnx_nlp.to_disk(tmp_path / "pipeline")
    model_file = tmp_path / "pipeline" / "crf_ner" / "model"
    msg = srsly.msgpack_loads(model_file.read_bytes())
    for attrs in msg["attrs"]:
        if damage == "graph" and "onnx_graph" in attrs:
            attrs["onnx_graph"] = attrs["onnx_graph"][: len(attrs["onnx_graph"]) // 2]
        if damage == "crf" and "crf_state" in attrs:
            attrs["crf_state"] = b"PK\x03\x04 not a zip"
        if damage == "other_graph" and "onnx_graph" in attrs:
            attrs["onnx_graph"] = _graph_with_width(16, 5)
    model_file.write_bytes(srsly.msgpack_dumps(msg))
    with pytest.raises(ValueError, match=message) as caught:
        spacy.load(tmp_path / "pipeline")
    assert "\n" not in str(caught.value)


def _graph_with_width(n_in: int, n_out: int) -> bytes:
    """A valid scorer graph of other widths (a linear layer), as another export would hold."""
    import torch

    class Linear(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(n_in, n_out)

        def forward(self, vectors: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
            return self.linear(vectors) * (lengths > 0).float()[:, None, None]

    program = torch.onnx.export(
        Linear().eval(),
        (torch.zeros(2, 3, n_in), torch.tensor([3, 1])),
        input_names=["vectors", "lengths"],
        output_names=["scores"],
        dynamic_shapes=({0: torch.export.Dim("batch"), 1: torch.export.Dim("length")}, {0: torch.export.Dim("batch")}),
        dynamo=True,
        verbose=False,
    )
    return program.model_proto.SerializeToString()


def test_export_refuses_what_it_cannot_export(english, tmp_path: Path, tiny_bert: Path) -> None:
    torch_nlp, _, path = english
    with pytest.raises(ExportError, match="exists"):
        export_pipeline(torch_nlp, path)
    with pytest.raises(ExportError, match="no crf_ner component"):
        export_pipeline(spacy.blank("xx"), tmp_path / "a")
    nlp = inline_nlp(tiny_bert)
    train(nlp, steps=1)
    with pytest.raises(ExportError, match="reads a transformer"):
        export_pipeline(nlp, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_the_export_command_writes_a_pipeline_and_reports_errors_in_one_line(
    english, saved_pipeline: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["export", str(saved_pipeline), str(tmp_path / "out")]) == 0
    assert "Exported crf_ner (float ONNX)" in capsys.readouterr().out
    assert spacy.load(tmp_path / "out").get_pipe("crf_ner").is_exported
    assert main(["export", str(saved_pipeline), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("spacy-bilstm-crf export: error:") and "exists" in err and "\n" not in err


def test_an_exported_pipeline_loads_and_predicts_with_torch_blocked(english) -> None:
    """As in an environment without torch, and so without spacy-transformers
    (which needs it): both blocked from import, the latter's entry points hidden."""
    torch_nlp, _, path = english
    expected = [char_entities(doc) for doc in torch_nlp.pipe(EN_TEXTS)]
    script = textwrap.dedent(
        f"""
        import importlib.abc, json, sys

        BLOCKED = ("torch", "spacy_transformers")

        class Blocked(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, Blocked())
        import catalogue

        class WithoutBlocked:
            def __init__(self, entry_points):
                self.entry_points = entry_points

            def select(self, *, group):
                found = self.entry_points.select(group=group)
                return [ep for ep in found if ep.value.split(".")[0].split(":")[0] not in BLOCKED]

        catalogue.AVAILABLE_ENTRY_POINTS = WithoutBlocked(catalogue.AVAILABLE_ENTRY_POINTS)
        import spacy
        nlp = spacy.load({str(path)!r})
        texts = {EN_TEXTS!r}
        print(json.dumps([[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]))
        assert not set(BLOCKED) & set(sys.modules)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert [[tuple(ent) for ent in doc] for doc in found] == expected


@pytest.mark.parametrize("encoder", ["bilstm", "idcnn", "idcnn_v1", "none"])
@pytest.mark.parametrize("scheme", ["BILUO", "BIO"])
def test_every_encoder_and_scheme_exports_with_the_same_entities(encoder: str, scheme: str, tmp_path: Path) -> None:
    for lang, texts in (("xx", EN_TEXTS + real_texts("en")), ("zh", ZH_TEXTS + real_texts("zh"))):
        nlp = make_nlp(encoder, lang=lang, scheme=scheme)
        train(nlp, steps=40, data=ZH_TRAIN if lang == "zh" else None)
        onnx_nlp = exported(nlp, tmp_path / f"{lang}-{encoder}-{scheme}")
        assert_same_entities(nlp, onnx_nlp, texts)


def test_a_chinese_char_ngram_pipeline_exports_its_dense_tail_with_the_same_entities(tmp_path: Path) -> None:
    # The Chinese CPU configs' tok2vec: the graph computes its Maxout mix and window encoder.
    from .test_dense_tail import CHAR_TOK2VEC

    nlp = make_nlp("bilstm", lang="zh", tok2vec=CHAR_TOK2VEC, head_lr_scale=5.0)
    train(nlp, steps=40, data=ZH_TRAIN)
    onnx_nlp = exported(nlp, tmp_path / "zh")
    model = onnx_nlp.get_pipe("crf_ner").model
    assert onnx_nlp.config["components"]["crf_ner"]["model"]["tok2vec_layers_in_graph"] == 4
    assert model.get_ref("tok2vec").name == "tok2vec_front"
    assert model.get_ref("scorer").get_dim("nI") == 68  # the embedding tables' concatenated width
    assert_same_entities(nlp, onnx_nlp, ZH_TEXTS + real_texts("zh"))
    assert any(doc.ents for doc in onnx_nlp.pipe(ZH_TEXTS))


def test_a_pipeline_whose_crf_ner_listens_to_a_tok2vec_component_exports_from_the_encoder(tmp_path: Path) -> None:
    # The listener's vectors come from the tok2vec component, which stays in Thinc: the graph starts at the encoder.
    nlp = spacy.blank("xx")
    nlp.add_pipe("tok2vec", config={"model": cnn_tok2vec(width=16, depth=1, embed_size=300)})
    listener = {"@architectures": "spacy.Tok2VecListener.v1", "width": 16, "upstream": "tok2vec"}
    nlp.add_pipe("crf_ner", config={"model": crf_tagger("bilstm", listener)})
    train(nlp, steps=40)
    onnx_nlp = exported(nlp, tmp_path / "listener")
    assert onnx_nlp.config["components"]["crf_ner"]["model"]["tok2vec_layers_in_graph"] == 0
    assert onnx_nlp.get_pipe("crf_ner").model.get_ref("scorer").get_dim("nI") == 16
    assert_same_entities(nlp, onnx_nlp, EN_TEXTS + real_texts("en"))
    assert any(doc.ents for doc in onnx_nlp.pipe(EN_TEXTS))


def test_an_int8_export_loads_and_predicts(english, tmp_path: Path) -> None:
    torch_nlp, _, _ = english
    onnx_nlp = exported(torch_nlp, tmp_path / "int8", quantize=True)
    meta = srsly.read_json(tmp_path / "int8" / "meta.json")
    assert meta["spacy_bilstm_crf_export"]["quantized"] is True
    graph = onnx_nlp.get_pipe("crf_ner").model.get_ref("scorer").attrs["onnx_graph"].data
    import onnx

    ops = [node.op_type for node in onnx.load_from_string(graph).graph.node]
    assert "DynamicQuantizeLSTM" in ops  # the BiLSTM
    # int8 products for the emission layer and each Maxout of the tok2vec's tail (its mix, its encoder's layers)
    depth = torch_nlp.config["components"]["crf_ner"]["model"]["tok2vec"]["depth"]
    assert ops.count("MatMulInteger") == 1 + 1 + depth
    docs = list(onnx_nlp.pipe(EN_TEXTS))
    assert len(docs) == len(EN_TEXTS)


def test_an_exported_pipeline_gives_the_same_entities_in_two_processes(english) -> None:
    _, onnx_nlp, _ = english
    texts = EN_TEXTS * 20
    one = [char_entities(doc) for doc in onnx_nlp.pipe(texts)]
    two = [char_entities(doc) for doc in onnx_nlp.pipe(texts, n_process=2, batch_size=8)]
    assert two == one


def test_a_wheel_of_an_export_installs_and_runs_in_a_fresh_venv_without_torch(english, tmp_path: Path) -> None:
    torch_nlp, _, path = english
    packages = tmp_path / "packages"
    packages.mkdir()
    package = [sys.executable, "-m", "spacy", "package", str(path), str(packages), "--build", "wheel"]
    done = subprocess.run(package + ["--name", "onnx_ner", "--version", "0.0.1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    model_wheel = next(packages.glob("*/dist/*.whl"))
    metadata = wheel_metadata(model_wheel)
    assert "Requires-Dist: spacy-bilstm-crf[onnx]" in metadata
    assert "torch" not in metadata
    python = venv_with_package(tmp_path, str(model_wheel))
    script = (
        "import importlib.util, json, sys\n"
        "assert importlib.util.find_spec('torch') is None, 'torch is installed'\n"
        "import spacy\n"
        "nlp = spacy.load('xx_onnx_ner')\n"
        "docs = nlp.pipe(json.loads(sys.argv[1]))\n"
        "print(json.dumps([[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in docs]))\n"
    )
    result = subprocess.run([str(python), "-c", script, json.dumps(EN_TEXTS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    found = [[tuple(ent) for ent in doc] for doc in json.loads(result.stdout.strip().splitlines()[-1])]
    assert found == [char_entities(doc) for doc in torch_nlp.pipe(EN_TEXTS)]
