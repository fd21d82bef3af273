"""bertkit.build: tokenizers that load offline through AutoTokenizer, random models, token tables."""

from __future__ import annotations

import importlib.util
import json
import unicodedata

import pytest

from bertkit.build import (
    MODEL_SIZES,
    SPECIAL_TOKENS,
    build_tokenizer,
    format_token_table,
    init_model,
    read_corpus,
    token_table,
)
from bertkit.errors import BertkitError

pytest.importorskip("fugashi")
pytest.importorskip("unidic_lite")

JA_LINES = [
    "東京都に住んでいる研究者が経済政策を分析した。",
    "株式会社の今年度の業績は好調に推移しております。",
    "ＡＩやＩｏＴなどの最先端技術への投資が増えている。",
    "大阪府の研究所では新しい治療法を開発している。",
    "患者は７０歳の男性で、発熱を主訴に来院した。",
]
EN_LINES = ["The quick brown fox jumps over the lazy dog.", "Models learn from data; data teaches models."]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    (d / "ja.txt").write_text("\n".join(JA_LINES * 3) + "\n\n", encoding="utf-8")
    rows = [{"text": JA_LINES[0], "label": 1}, {"context": JA_LINES[1], "question": "業績は？"}]
    (d / "ja.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    qas = [{"question": "何への投資？", "id": "q1", "answers": []}]
    squad = {"data": [{"title": "t", "paragraphs": [{"context": "タイトル [SEP] " + JA_LINES[2], "qas": qas}]}]}
    (d / "squad.json").write_text(json.dumps(squad, ensure_ascii=False), encoding="utf-8")
    (d / "en.txt").write_text("\n".join(EN_LINES * 5), encoding="utf-8")
    return d


@pytest.fixture(scope="module")
def ja_dir(corpus, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("ja_tok")
    files = [str(corpus / "ja.txt"), str(corpus / "ja.jsonl"), str(corpus / "squad.json")]
    return build_tokenizer(files, "ja", 400, str(out), model_max_length=128, min_frequency=1)


@pytest.fixture(scope="module")
def en_dir(corpus, tmp_path_factory) -> str:
    return build_tokenizer([str(corpus / "en.txt")], "en", 200, str(tmp_path_factory.mktemp("en_tok")), min_frequency=1)


def _load(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


# --- corpus reading --------------------------------------------------------------------------------


def test_read_corpus_formats(corpus):
    assert list(read_corpus([str(corpus / "ja.jsonl")])) == [JA_LINES[0], JA_LINES[1], "業績は？"]
    assert list(read_corpus([str(corpus / "squad.json")])) == ["タイトル [SEP] " + JA_LINES[2], "何への投資？"]
    assert list(read_corpus([str(corpus / "ja.txt")])) == JA_LINES * 3  # blank lines skipped


def test_missing_corpus_file_is_a_bertkit_error(tmp_path):
    with pytest.raises(BertkitError, match="corpus file not found"):
        build_tokenizer([str(tmp_path / "nope.txt")], "ja", 100, str(tmp_path / "out"))


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(lang="fr"), "unknown language"), (dict(vocab_size=3), "too small"), (dict(mecab_dic="juman"), "mecab_dic")],
)
def test_bad_arguments_are_bertkit_errors(corpus, tmp_path, kwargs, message):
    args = dict(lang="ja", vocab_size=100) | kwargs
    with pytest.raises(BertkitError, match=message):
        build_tokenizer([str(corpus / "ja.txt")], output_dir=str(tmp_path / "out"), **args)


def test_empty_corpus_is_a_bertkit_error(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(BertkitError, match="no text"):
        build_tokenizer([str(tmp_path / "empty.txt")], "ja", 100, str(tmp_path / "out"))


# --- Japanese tokenizer ----------------------------------------------------------------------------


def test_japanese_tokenizer_files_look_like_tohoku(ja_dir):
    from pathlib import Path

    d = Path(ja_dir)
    assert sorted(p.name for p in d.iterdir()) == ["special_tokens_map.json", "tokenizer_config.json", "vocab.txt"]
    config = json.loads((d / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert config["tokenizer_class"] == "BertJapaneseTokenizer"
    assert config["word_tokenizer_type"] == "mecab"
    assert config["subword_tokenizer_type"] == "wordpiece"
    assert config["mecab_kwargs"] == {"mecab_dic": "unidic_lite"}
    assert config["do_lower_case"] is False
    assert config["model_max_length"] == 128
    assert (d / "vocab.txt").read_text(encoding="utf-8").splitlines()[:5] == SPECIAL_TOKENS


def test_japanese_tokenizer_loads_offline_and_round_trips(ja_dir):
    from transformers import BertJapaneseTokenizer

    tok = _load(ja_dir)
    assert type(tok) is BertJapaneseTokenizer
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 1, 2, 3, 4]
    assert tok.word_tokenizer_type == "mecab" and tok.mecab_kwargs == {"mecab_dic": "unidic_lite"}
    assert 5 < len(tok) <= 400
    ids = tok(JA_LINES[0])["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and tok.unk_token_id not in ids  # a training sentence is covered
    assert tok.decode(ids, skip_special_tokens=True).replace(" ", "") == JA_LINES[0]
    # the corpus' full-width letters were seen NFKC-normalised, like the tokenizer will see them
    assert "AI" in tok.tokenize("ＡＩ")


def test_japanese_vocab_words_come_from_mecab(ja_dir):
    vocab = (__import__("pathlib").Path(ja_dir) / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert "東京" in vocab and "研究" in vocab  # MeCab words (unidic-lite splits 研究者 into 研究 / 者)
    assert "[SEP]" not in vocab[5:]  # special-token strings in the corpus are not counted as words


def test_japanese_lowercase_option(corpus, tmp_path):
    out = build_tokenizer([str(corpus / "ja.txt")], "ja", 300, str(tmp_path), lowercase=True, min_frequency=1)
    tok = _load(out)
    assert tok.do_lower_case and "ai" in tok.tokenize("ＡＩ")


@pytest.mark.skipif(importlib.util.find_spec("ipadic") is None, reason="ipadic is not installed")
def test_japanese_ipadic(corpus, tmp_path):
    out = build_tokenizer([str(corpus / "ja.txt")], "ja", 300, str(tmp_path), mecab_dic="ipadic", min_frequency=1)
    tok = _load(out)
    assert tok.mecab_kwargs == {"mecab_dic": "ipadic"}
    assert tok.word_tokenizer.tokenize("株式会社") == ["株式会社"]  # unidic-lite: 株式 / 会社


# --- English tokenizer -----------------------------------------------------------------------------


def test_english_tokenizer_is_fast_and_lowercases(en_dir):
    tok = _load(en_dir)
    assert tok.is_fast and tok.do_lower_case
    assert tok.convert_ids_to_tokens(tok("The QUICK fox")["input_ids"]) == ["[CLS]", "the", "quick", "fox", "[SEP]"]
    assert tok.convert_tokens_to_ids(SPECIAL_TOKENS) == [0, 1, 2, 3, 4]
    assert tok.model_max_length == 512


def test_english_cased(corpus, tmp_path):
    tok = _load(build_tokenizer([str(corpus / "en.txt")], "en", 200, str(tmp_path), lowercase=False, min_frequency=1))
    assert "The" in tok.tokenize("The fox")


# --- models ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ja_model(ja_dir, tmp_path_factory) -> str:
    return init_model(ja_dir, "micro", str(tmp_path_factory.mktemp("ja_model")))


def test_init_model_is_loadable_and_matches_the_tokenizer(ja_model):
    import torch
    from transformers import AutoModelForMaskedLM

    tok = _load(ja_model)  # the model directory alone is enough
    model = AutoModelForMaskedLM.from_pretrained(ja_model)
    cfg = model.config
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads, cfg.intermediate_size) == MODEL_SIZES["micro"]
    assert cfg.vocab_size == len(tok) and cfg.pad_token_id == tok.pad_token_id == 0
    assert cfg.max_position_embeddings == 128  # the tokenizer's model_max_length
    batch = tok([JA_LINES[0]], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, batch["input_ids"].shape[1], len(tok))
    assert (__import__("pathlib").Path(ja_model) / "model.safetensors").is_file()


def test_init_model_seed_is_reproducible(en_dir, tmp_path):
    from safetensors.torch import load_file

    a = load_file(f"{init_model(en_dir, 'micro', str(tmp_path / 'a'), seed=1)}/model.safetensors")
    b = load_file(f"{init_model(en_dir, 'micro', str(tmp_path / 'b'), seed=1)}/model.safetensors")
    c = load_file(f"{init_model(en_dir, 'micro', str(tmp_path / 'c'), seed=2, max_position_embeddings=64)}/model.safetensors")
    key = "bert.embeddings.word_embeddings.weight"
    assert a[key].equal(b[key]) and not a[key].equal(c[key])
    assert c["bert.embeddings.position_embeddings.weight"].shape[0] == 64


def test_init_model_rejects_unknown_size_and_missing_tokenizer(en_dir, tmp_path):
    with pytest.raises(BertkitError, match="unknown model size"):
        init_model(en_dir, "huge", str(tmp_path))
    with pytest.raises(BertkitError, match="tokenizer directory not found"):
        init_model(str(tmp_path / "none"), "micro", str(tmp_path / "m"))


# --- token tables ----------------------------------------------------------------------------------


def test_token_table_english_exact():
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIAL_TOKENS + ["hello", "world", "##s", "!"])}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    [rows] = token_table(tok, ["Hello worlds!"])
    assert rows == [
        {"index": 0, "token": "[CLS]", "id": 2, "word_id": None, "start": None, "end": None, "text": None},
        {"index": 1, "token": "hello", "id": 5, "word_id": 0, "start": 0, "end": 5, "text": "Hello"},
        {"index": 2, "token": "world", "id": 6, "word_id": 1, "start": 6, "end": 11, "text": "world"},
        {"index": 3, "token": "##s", "id": 7, "word_id": 1, "start": 11, "end": 12, "text": "s"},
        {"index": 4, "token": "!", "id": 8, "word_id": 2, "start": 12, "end": 13, "text": "!"},
        {"index": 5, "token": "[SEP]", "id": 3, "word_id": None, "start": None, "end": None, "text": None},
    ]
    assert format_token_table([rows], ["Hello worlds!"]) == (
        "text 1: Hello worlds!\n"
        "#  token  id  word  span   text\n"
        "0  [CLS]   2\n"
        "1  hello   5  0     0:5    Hello\n"
        "2  world   6  1     6:11   world\n"
        "3  ##s     7  1     11:12  s\n"
        "4  !       8  2     12:13  !\n"
        "5  [SEP]   3\n"
    )


def _display_width(s: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in s)


def test_token_table_japanese(ja_dir):
    tok = _load(ja_dir)
    text = "ＡＩの研究者\t㈱"
    [rows] = token_table(tok, [text])
    assert rows[0]["token"] == "[CLS]" and rows[-1]["token"] == "[SEP]"
    inner = rows[1:-1]
    assert [r["id"] for r in inner] == tok(text, add_special_tokens=False)["input_ids"]
    assert all(r["text"] == text[r["start"] : r["end"]] for r in inner)
    assert inner[0]["text"] == "ＡＩ" and inner[-1]["text"] == "㈱"
    assert [r["index"] for r in rows] == list(range(len(rows)))
    table = format_token_table([rows], [text])
    assert "\\t" in table.splitlines()[0]  # the tab is shown, not printed
    # columns line up on screen although kanji take two cells: every id ends in the same column
    lines = table.splitlines()[2:]
    ends = set()
    for line, r in zip(lines, rows):
        head = f"{r['index']}".ljust(2) + "  " + r["token"]
        pos = line.index(str(r["id"]), len(head))
        ends.add(_display_width(line[: pos + len(str(r["id"]))]))
    assert len(ends) == 1
