"""`explain`: the trace of one text through the pipeline (tokens, vectors,
encoder, emissions, transitions, k-best paths, marginals, entities), its text,
JSON and HTML renderings, and the command."""

import json
import shutil
import subprocess

import numpy
import pytest
from spacy.language import Language

from spacy_bilstm_crf.cli import main
from spacy_bilstm_crf.explain import explain, render_html, render_text
from spacy_bilstm_crf.explain.terminal import display_width
from spacy_bilstm_crf.layers.crf import crf_decode
from spacy_bilstm_crf.models.crf_tagger import get_crf

from .pipelines import ENCODERS, TOK2VEC, entities, inline_nlp, listener_nlp, make_nlp, train

ZH_TEXT = "张三和李四昨天在北京的微软公司开会讨论"  # 19 characters
EN_TEXT = "Alice and Bob met Google engineers in London and Paris to discuss new products today"


def check_trace(nlp: Language, text: str, k: int = 3):
    trace = explain(nlp, text, k=k)
    pipe = nlp.get_pipe("crf_ner")
    doc = nlp.make_doc(text)
    for name, _ in nlp.pipeline[:-1]:
        doc = nlp.get_pipe(name)(doc)
    emissions = pipe.model.predict([doc])[0]
    numpy.testing.assert_allclose(trace.emissions.scores, emissions, atol=1e-3)
    n_tokens, n_tags = len(doc), len(pipe.tags)
    assert [t.text for t in trace.tokens] == [t.text for t in doc]
    assert trace.vectors.shape[0] == n_tokens and trace.encoder.shape[0] == n_tokens
    assert numpy.asarray(trace.emissions.scores).shape == (n_tokens, n_tags)
    assert all(len(top) == 3 for top in trace.emissions.top)
    best = [pipe.tags[i] for i in crf_decode(get_crf(pipe.model), [emissions])[0].tolist()]
    assert trace.paths.paths[0].tags == best
    probs = [p.probability for p in trace.paths.paths]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1.0 + 1e-6 and len(probs) == k
    assert all(p.differs_at for p in trace.paths.paths[1:])
    final = nlp(text)
    assert [(e.start, e.end, e.label) for e in trace.entities if e.predicted] == entities(final)
    numpy.testing.assert_allclose(numpy.asarray(trace.marginals).sum(axis=1), 1.0, atol=1e-3)
    text_out = render_text(trace)
    for n in range(1, 9):
        assert f"\n{n}. " in text_out
    assert max(display_width(line) for line in text_out.splitlines()) <= 100
    json.dumps(trace.to_dict())
    return trace


@pytest.mark.parametrize("encoder", ["bilstm", "idcnn", "none"])
def test_explain_cpu_tok2vec_each_encoder(encoder):
    nlp = make_nlp(encoder, lang="zh")
    train(nlp, steps=2)
    trace = check_trace(nlp, ZH_TEXT)
    assert trace.transformer is None
    assert trace.vectors.shape == [len(ZH_TEXT), TOK2VEC["width"]]
    assert trace.vectors.context.startswith("3 tokens")  # window 1, depth 1
    # the IDCNN's kernel 3 and dilations [1, 2] (its defaults), 2 iterations
    assert trace.encoder.receptive_field == (15 if encoder == "idcnn" else None)
    widths = {
        "bilstm": 2 * ENCODERS["bilstm"]["hidden_width"],
        "idcnn": ENCODERS["idcnn"]["width"],
        "none": TOK2VEC["width"],
    }
    assert trace.encoder.shape[1] == widths[encoder]
    assert trace.transitions.forbidden[0] == ("<start>", "I-LOC") and ("O", "L-PER") in trace.transitions.forbidden


@pytest.mark.parametrize("inline,encoder", [(False, "idcnn"), (True, "none")])
def test_explain_transformer(tiny_bert, inline, encoder):
    build = inline_nlp if inline else listener_nlp
    nlp = build(tiny_bert, encoder, window=4, stride=3, spans_key="sc", head_lr_scale=20.0)
    train(nlp, steps=1)
    trace = check_trace(nlp, EN_TEXT)
    trf = trace.transformer
    assert trf is not None and trf.kind == ("inline" if inline else "listener")
    n_tokens = len(trace.tokens)
    assert len(trf.windows) > 4 and all(w.end - w.start <= 4 for w in trf.windows)  # window 4, stride 3
    assert sorted({i for w in trf.windows for i in range(w.start, w.end)}) == list(range(n_tokens))
    assert trf.output_shape[0] == len(trf.windows) and trf.output_shape[2] == 32
    assert len(trf.alignment) == n_tokens
    for token, pairs in zip(trace.tokens, trf.alignment):
        windows = sorted({w for w, _ in pairs})
        assert windows == [n for n, w in enumerate(trf.windows) if w.start <= token.i < w.end]
        for window in windows:
            pieces = [trf.windows[window].wordpieces[p] for w, p in pairs if w == window]
            assert "".join(piece.replace("##", "") for piece in pieces) == token.text.lower()


def test_explain_command_writes_json_and_html(tmp_path, capsys):
    nlp = make_nlp("idcnn", lang="zh", spans_key="sc")
    train(nlp, steps=30)
    nlp.to_disk(tmp_path / "model")
    code = main(
        [
            "explain",
            str(tmp_path / "model"),
            ZH_TEXT,
            "--k",
            "2",
            "--json",
            str(tmp_path / "t.json"),
            "--html",
            str(tmp_path / "t.html"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and "7. Viterbi path and the next 1 best" in out
    data = json.loads((tmp_path / "t.json").read_text(encoding="utf8"))
    assert data["text"] == ZH_TEXT and len(data["paths"]["paths"]) == 2
    assert data["paths"]["paths"][0]["tags"] == explain(nlp, ZH_TEXT).paths.paths[0].tags
    html = (tmp_path / "t.html").read_text(encoding="utf8")
    assert html.count("<svg") == 2 and 'class="entities"' in html
    predicted = [e for e in data["entities"] if e["predicted"]]
    assert predicted, "the trained pipeline finds entities in the sentence"
    for e in predicted:
        assert f"{e['label']} {e['probability']:.2f}" in html


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_explain_html_renders_in_headless_chromium(tmp_path):
    nlp = make_nlp(lang="zh", spans_key="sc")
    train(nlp, steps=30)
    trace = explain(nlp, ZH_TEXT)
    page = tmp_path / "trace.html"
    page.write_text(render_html(trace), encoding="utf8")
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'class="emissions"' in dom and 'class="transitions"' in dom
    assert dom.count("<mark") == len([e for e in trace.entities if e.predicted]) > 0
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1200,900",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    assert shot.stat().st_size > 10_000


def test_explain_names_an_unknown_or_wrong_component():
    nlp = make_nlp()
    train(nlp, steps=1)
    nlp.add_pipe("sentencizer", first=True)
    with pytest.raises(
        ValueError, match=r"^The pipeline has no component 'nope'; its components: sentencizer, crf_ner\.$"
    ):
        explain(nlp, "Alice lives in Paris", component="nope")
    with pytest.raises(ValueError, match="Component 'sentencizer' is not a crf_ner component"):
        explain(nlp, "Alice lives in Paris", component="sentencizer")
