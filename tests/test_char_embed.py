"""CharNgramEmbed.v1 and its feature layer: exact ids on tiny text, nothing
leaking into the docs, round trips, any input, and the layer inside crf_ner and
spaCy's ner."""

import json
import subprocess
import sys
import warnings
from typing import Any, Dict, List

import numpy
import pytest
import spacy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spacy.tokens import Doc
from spacy.util import registry
from thinc.api import Model

from spacy_bilstm_crf.layers.char_features import (
    BEGIN,
    END,
    LEFT_BIGRAM,
    MIDDLE,
    RIGHT_BIGRAM,
    SINGLE,
    UNIT,
    WORD,
    WORD_POSITION,
    char_ngram_features,
)
from spacy_bilstm_crf.models.char_embed import CharNgramEmbed_v1

from .pipelines import char_entities, examples, make_nlp, train
from .tiny_data import ZH_TRAIN

ZH = spacy.blank("zh")  # one token per character
SMALL = {"width": 8, "char_rows": 64, "bigram_rows": 64, "word_rows": 64, "position_width": 4}


def char_doc(text: str) -> Doc:
    return ZH.make_doc(text)


def embed(**settings: Any) -> Model:
    model = CharNgramEmbed_v1(**{**SMALL, **settings})
    model.initialize(X=[char_doc("北京")])
    return model


def test_bigram_ids_are_shared_between_neighbours_and_marked_at_the_edges():
    (ids,) = char_ngram_features("jieba")([char_doc("我爱北京")], is_train=False)[0]
    assert ids.shape == (4, 5) and ids.dtype == numpy.uint64
    # One token's right bigram is the next one's left bigram: one table serves both.
    assert list(ids[1:, LEFT_BIGRAM]) == list(ids[:-1, RIGHT_BIGRAM])
    # The edges get a sentinel instead of a neighbour, so 我's left bigram is no right bigram of the doc.
    assert ids[0, LEFT_BIGRAM] not in set(ids[:, RIGHT_BIGRAM])
    assert ids[-1, RIGHT_BIGRAM] not in set(ids[:, LEFT_BIGRAM])
    # The same characters give the same ids in another doc.
    (again,) = char_ngram_features("jieba")([char_doc("北京")], is_train=False)[0]
    assert list(again[:, UNIT]) == list(ids[2:, UNIT]) and again[0, RIGHT_BIGRAM] == ids[2, RIGHT_BIGRAM]


def test_whitespace_separates_bigrams():
    spaced = Doc(ZH.vocab, words=["北", "京"], spaces=[True, False])
    joined = Doc(ZH.vocab, words=["北", "京"], spaces=[False, False])
    (a,), (b,) = char_ngram_features(None)([spaced], False)[0], char_ngram_features(None)([joined], False)[0]
    assert a.shape == (2, 3) and list(a[:, UNIT]) == list(b[:, UNIT])
    assert a[0, RIGHT_BIGRAM] != b[0, RIGHT_BIGRAM] and a[1, LEFT_BIGRAM] != b[1, LEFT_BIGRAM]


def test_word_positions_follow_jiebas_words():
    text = "中国科学院的王教授访问了清华大学。"
    (ids,) = char_ngram_features("jieba")([char_doc(text)], is_train=False)[0]
    # jieba (0.42.1, HMM on): 中国科学院 / 的 / 王 / 教授 / 访问 / 了 / 清华大学 / 。
    words = ["中国科学院", "的", "王", "教授", "访问", "了", "清华大学", "。"]
    expected: List[int] = []
    for word in words:
        expected += [SINGLE] if len(word) == 1 else [BEGIN] + [MIDDLE] * (len(word) - 2) + [END]
    assert list(ids[:, WORD_POSITION]) == expected
    word_ids = list(ids[:, WORD])
    assert len(set(word_ids[:5])) == 1 and len(set(word_ids[12:16])) == 1 and word_ids[0] != word_ids[12]


def test_multi_character_tokens_get_their_position_from_the_word_of_their_first_character():
    nlp = spacy.blank("xx")
    (ids,) = char_ngram_features("jieba")([nlp.make_doc("清华 大学 ok")], is_train=False)[0]
    assert list(ids[:, WORD_POSITION]) == [SINGLE, SINGLE, SINGLE]  # each token is a word of its own


def test_features_touch_neither_the_doc_nor_the_strings():
    doc = char_doc("李明昨天从上海飞往香港。")
    n_strings = len(doc.vocab.strings)
    before = doc.to_bytes()
    CharNgramEmbed_v1(**SMALL).initialize(X=[doc])
    assert doc.to_bytes() == before and len(doc.vocab.strings) == n_strings and not doc.user_data


def test_output_shapes_and_gradients():
    model = embed()
    docs = [char_doc("张三在北京工作"), char_doc(""), char_doc("😀 mixed 中文")]
    vectors, backprop = model(docs, is_train=True)
    assert [v.shape for v in vectors] == [(len(d), 8) for d in docs]
    backprop([numpy.ones_like(v) for v in vectors])
    grads = [node.get_grad(name) for node in model.walk() for name in node.param_names if node.has_grad(name)]
    assert grads and all(numpy.isfinite(g).all() for g in grads) and any(g.any() for g in grads)


@pytest.mark.parametrize(
    "settings",
    [{}, {"segmenter": None}, {"segmenter": None, "bigrams": False}],
    ids=["words", "bigrams", "chars"],
)
def test_round_trip_is_exact(settings):
    model = embed(**settings)
    docs = [char_doc("中国科学院的王教授访问了清华大学。")]
    loaded = CharNgramEmbed_v1(**{**SMALL, **settings}).from_bytes(model.to_bytes())
    assert loaded.to_bytes() == model.to_bytes()
    assert all(numpy.array_equal(a, b) for a, b in zip(model.predict(docs), loaded.predict(docs)))


def test_saved_segmenter_identity_and_a_changed_dictionary_warns():
    model = embed()
    features = model.layers[0].layers[0]
    assert features.attrs["segmenter"] == "jieba" and features.attrs["segmenter_version"] == "0.42.1"
    assert len(features.attrs["dictionary_sha256"]) == 64
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.predict([char_doc("北京")])  # the dictionary it was built with: no warning
    assert not [w for w in caught if "trained with" in str(w.message)]
    other = embed()
    other.layers[0].layers[0].attrs["dictionary_sha256"] = "0" * 64
    with pytest.warns(UserWarning, match="trained with jieba 0.42.1 .*dictionary sha256 000000000000"):
        other.predict([char_doc("北京")])


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"width": 0}, "CharNgramEmbed needs width >= 1, got 0"),
        ({"bigram_rows": -1}, "CharNgramEmbed needs bigram_rows >= 1, got -1"),
        ({"word_rows": 0}, "word_rows >= 1 and position_width >= 1 with a segmenter, got 0 and 4"),
        ({"segmenter": "pkuseg"}, "Unknown segmenter 'pkuseg': choose one of jieba or null"),
    ],
)
def test_bad_settings_are_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        CharNgramEmbed_v1(**{**SMALL, **settings})


def test_registered_and_resolved_from_a_config():
    block = {"@architectures": "spacy-bilstm-crf.CharNgramEmbed.v1", **SMALL}
    model = registry.resolve({"embed": block})["embed"]
    model.initialize(X=[char_doc("北京")])
    assert model.predict([char_doc("上海")])[0].shape == (2, 8)


ANY_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),  # any script, emoji, controls; no lone surrogates (spaCy refuses them)
        st.sampled_from(list("北京上海中国科学院王教授。，、 \n\t")),
    ),
    max_size=60,
)


@pytest.fixture(scope="module")
def any_text_model() -> Model:
    return embed()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(texts=st.lists(ANY_TEXT, min_size=1, max_size=4))
def test_any_text_gives_finite_vectors_of_every_token(any_text_model, texts):
    model = any_text_model
    for nlp in (ZH, XX):
        docs = [nlp.make_doc(text) for text in texts]
        vectors = model.predict(docs)
        assert [v.shape for v in vectors] == [(len(d), 8) for d in docs]
        assert all(numpy.isfinite(v).all() for v in vectors)


XX = spacy.blank("xx")


@pytest.mark.slow
def test_a_100000_character_doc(any_text_model):
    text = ("中国科学院的王教授访问了清华大学。" * 6000)[:100_000]
    (vectors,) = any_text_model.predict([char_doc(text)])
    assert vectors.shape == (100_000, 8) and numpy.isfinite(vectors).all()


# --- inside a pipeline -------------------------------------------------------------

TOK2VEC: Dict[str, Any] = {
    "@architectures": "spacy.Tok2Vec.v2",
    "embed": {"@architectures": "spacy-bilstm-crf.CharNgramEmbed.v1", **SMALL, "width": 16},
    "encode": {
        "@architectures": "spacy.MaxoutWindowEncoder.v2",
        "width": 16,
        "depth": 1,
        "window_size": 1,
        "maxout_pieces": 2,
    },
}


@pytest.fixture(scope="module")
def zh_pipeline():
    nlp = make_nlp(lang="zh", tok2vec=TOK2VEC, head_lr_scale=5.0)
    train(nlp, steps=80)
    return nlp


@pytest.mark.slow
def test_crf_ner_learns_the_tiny_chinese_data(zh_pipeline):
    for text, ents in ZH_TRAIN:
        assert char_entities(zh_pipeline(text)) == ents


@pytest.mark.slow
def test_saved_pipeline_predicts_the_same_in_a_fresh_process_and_with_two_processes(zh_pipeline, tmp_path):
    path = tmp_path / "pipeline"
    zh_pipeline.to_disk(path)
    texts = [text for text, _ in ZH_TRAIN] + ["王教授访问了北京。", "", "😀 hello 世界"]
    expected = [[(e.start_char, e.end_char, e.label_) for e in doc.ents] for doc in zh_pipeline.pipe(texts)]
    script = (
        "import json, sys, spacy\n"
        "nlp = spacy.load(sys.argv[1])\n"
        "texts = json.loads(sys.argv[2])\n"
        "one = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts)]\n"
        "two = [[(e.start_char, e.end_char, e.label_) for e in d.ents] for d in nlp.pipe(texts, n_process=2,"
        " batch_size=2)]\n"
        "print(json.dumps([one, two]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(path), json.dumps(texts)], capture_output=True, text=True, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = json.loads(result.stdout.strip().splitlines()[-1])
    assert [[tuple(e) for e in doc] for doc in one] == expected
    assert two == one


@pytest.mark.slow
def test_spacy_ner_takes_the_same_features():
    nlp = spacy.blank("zh")
    nlp.add_pipe(
        "ner",
        config={
            "model": {
                "@architectures": "spacy.TransitionBasedParser.v2",
                "state_type": "ner",
                "extra_state_tokens": False,
                "hidden_width": 16,
                "maxout_pieces": 2,
                "use_upper": True,
                "tok2vec": TOK2VEC,
            }
        },
    )
    egs = examples(nlp)
    optimizer = nlp.initialize(lambda: egs)
    losses = [nlp.update(egs, sgd=optimizer)["ner"] for _ in range(30)]
    assert losses[-1] < losses[0]
    # The features are inside ner's model, not beside it.
    assert "char_ngram_features" in [node.name for node in nlp.get_pipe("ner").model.walk()]
