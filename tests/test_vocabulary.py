"""bertkit.vocabulary: domain words found, added to WordPiece vocabularies (English uncased BERT, Tohoku-style
Japanese MeCab + WordPiece) as whole tokens, their embeddings the mean of their old pieces' rows (checked
against the original model's weights, read again from disk), kept through save_pretrained and a reload;
other tokenizer kinds refused in one sentence.
"""

from __future__ import annotations

import json
import string
import unicodedata
from pathlib import Path

import numpy as np
import pytest

from bertkit import corpus, vocabulary
from bertkit.errors import BertkitError
from bertkit.models import load_model, load_tokenizer

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

EN_WORDS = ["the", "a", "of", "in", "and", "cell", "binds", "to"]
EN_TEXTS = [
    "The kinase binds the Protein.",
    "Protein kinase activity in the cell.",
    "Proteins and kinases bind to the receptor.",
    "The protein binds 2024 receptors, the protein!",
    "2024 2024 2024 ... !!!",
]
# Counted by hand from EN_TEXTS (lower-cased): words of 3+ pieces with a letter, most frequent first.
EN_EXPECTED = [("protein", 4), ("kinase", 2)]

JA_WORDS = ["の", "を", "と", "が", "し", "た", "。", "更新", "増加"]
JA_TEXTS = [
    "半導体メーカーのデータベースを更新した。",
    "データベースとトランジスタが増加した。",
    "トランジスタのデータベース。",
]
# MeCab (unidic-lite) words of JA_TEXTS cut into 3+ character pieces: 半 / 導体 / メーカー / の / データベース ...
JA_EXPECTED = [("データベース", 3), ("トランジスタ", 2), ("メーカー", 1)]


def _save_model(directory: Path, vocab_size: int, *, tie: bool = True) -> None:
    """A 1-layer, 16-wide random BERT with random (not zero) MLM biases, so their means are tested too."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, tie_word_embeddings=tie)
    model = BertForMaskedLM(config)
    with torch.no_grad():
        model.cls.predictions.bias.normal_()
        if not tie:
            model.cls.predictions.decoder.weight.normal_()
    model.save_pretrained(directory)


@pytest.fixture(scope="module")
def en_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uncased fast WordPiece BERT tokenizer (letters, digits and their ## forms) and a tied model."""
    from transformers import BertTokenizer

    directory = tmp_path_factory.mktemp("vocab-en")
    chars = string.ascii_lowercase + string.digits
    vocab = list(dict.fromkeys(SPECIALS + list(".,!?") + EN_WORDS + list(chars) + [f"##{c}" for c in chars]))
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(vocab)}, model_max_length=64)
    tokenizer.save_pretrained(directory)
    _save_model(directory, len(vocab))
    return directory


@pytest.fixture(scope="module")
def en_untied_dir(tmp_path_factory: pytest.TempPathFactory, en_dir: Path) -> Path:
    directory = tmp_path_factory.mktemp("vocab-en-untied")
    load_tokenizer(str(en_dir)).save_pretrained(directory)
    _save_model(directory, len(load_tokenizer(str(en_dir))), tie=False)
    return directory


def _ja_vocab_dir(directory: Path, subwords: str) -> Path:
    chars = sorted({c for t in JA_TEXTS for c in unicodedata.normalize("NFKC", t)})
    vocab = list(dict.fromkeys(SPECIALS + JA_WORDS + chars + [f"##{c}" for c in chars]))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"tokenizer_class": "BertJapaneseTokenizer", "word_tokenizer_type": "mecab",
              "subword_tokenizer_type": subwords, "mecab_kwargs": {"mecab_dic": "unidic_lite"},
              "do_lower_case": False, "model_max_length": 64}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def ja_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Tohoku-style BertJapaneseTokenizer (MeCab + unidic-lite words, WordPiece subwords) and a model."""
    directory = _ja_vocab_dir(tmp_path_factory.mktemp("vocab-ja"), "wordpiece")
    _save_model(directory, len(load_tokenizer(str(directory))))
    return directory


def _masked_lm(directory: Path):
    from transformers import AutoModelForMaskedLM

    return load_model(str(directory), AutoModelForMaskedLM)


def _expected_mean(matrix, piece_ids: list[int]) -> np.ndarray:
    """The mean of the pieces' rows, computed in float64 from a copy of the ORIGINAL weights."""
    return matrix.detach().double().numpy()[piece_ids].mean(axis=0)


def _extended(directory: Path, texts: list[str], n: int, workdir: Path):
    tokenizer = load_tokenizer(str(directory))
    found = vocabulary.candidates(texts, tokenizer, n, 3)
    new = vocabulary.extend_tokenizer(tokenizer, [c["word"] for c in found], workdir)
    return tokenizer, found, new


# ---------------------------------------------------------------------------------------------
# Candidates


def test_candidates_are_the_most_frequent_split_words_of_the_uncased_tokenizer(en_dir: Path) -> None:
    tokenizer = load_tokenizer(str(en_dir))
    found = vocabulary.candidates(EN_TEXTS, tokenizer, 2, 3)
    assert [(c["word"], c["count"]) for c in found] == EN_EXPECTED  # "2024" (4 pieces, no letter) left out
    protein = found[0]
    assert protein["pieces"] == ["p", "##r", "##o", "##t", "##e", "##i", "##n"]
    assert protein["piece_ids"] == [tokenizer.get_vocab()[p] for p in protein["pieces"]]
    more = vocabulary.candidates(EN_TEXTS, tokenizer, 10, 3)
    assert [c["word"] for c in more][:2] == ["protein", "kinase"] and "2024" not in {c["word"] for c in more}
    assert all(len(c["pieces"]) >= 3 for c in more)
    long = vocabulary.candidates(EN_TEXTS, tokenizer, 10, 8)  # all seen once: in the order first seen
    assert [c["word"] for c in long] == ["activity", "proteins", "receptor", "receptors"]


def test_candidates_accept_a_dataset_column(en_dir: Path) -> None:
    import datasets

    tokenizer = load_tokenizer(str(en_dir))
    ds = datasets.Dataset.from_dict({"body": EN_TEXTS})
    found = vocabulary.candidates(ds, tokenizer, 2, 3, column="body")
    assert [(c["word"], c["count"]) for c in found] == EN_EXPECTED


def test_japanese_candidates_are_mecab_words(ja_dir: Path) -> None:
    tokenizer = load_tokenizer(str(ja_dir))
    found = vocabulary.candidates(JA_TEXTS, tokenizer, 5, 3)
    assert [(c["word"], c["count"]) for c in found] == JA_EXPECTED
    assert found[0]["pieces"] == ["デ", "##ー", "##タ", "##ベ", "##ー", "##ス"]


# ---------------------------------------------------------------------------------------------
# The tokenizer


def test_english_words_become_whole_tokens_appended_at_the_end(en_dir: Path, tmp_path: Path) -> None:
    tokenizer, found, new = _extended(en_dir, EN_TEXTS, 2, tmp_path / "tok")
    old_len = len(tokenizer)
    assert vocabulary.first_new_id(tokenizer) == old_len and len(new) == old_len + 2
    assert new.convert_tokens_to_ids(["protein", "kinase"]) == [old_len, old_len + 1]
    old_vocab, new_vocab = tokenizer.get_vocab(), new.get_vocab()
    assert all(new_vocab[t] == i for t, i in old_vocab.items())  # existing ids unchanged
    assert new.tokenize("Protein") == ["protein"]  # uncased: the lower-cased entry
    assert new.tokenize("kinase proteins kinases") == ["kinase", "protein", "##s", "kinase", "##s"]
    # Inside a longer word WordPiece keeps its longest match from the word's start only.
    assert new.tokenize("phosphoprotein") == tokenizer.tokenize("phosphoprotein")
    other = "the cell binds a receptor, 2024!"
    assert new(other)["input_ids"] == tokenizer(other)["input_ids"]
    # bertkit's own alignment (whole-word masking, word ids) sees one word, one token
    (ids, words), = corpus.tokenize_lines(new, ["The protein binds"])
    assert new.convert_ids_to_tokens(ids) == ["the", "protein", "binds"] and words == [0, 1, 2]


def test_extension_skips_known_words_and_repeats_and_lower_cases(en_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(en_dir))
    new = vocabulary.extend_tokenizer(tokenizer, ["Kinase", "the", "kinase", "KINASE", "Receptor"], tmp_path / "tok")
    assert len(new) == len(tokenizer) + 2
    assert new.convert_tokens_to_ids(["kinase", "receptor"]) == [len(tokenizer), len(tokenizer) + 1]
    assert vocabulary.extend_tokenizer(tokenizer, ["the", "Cell"], tmp_path / "none") is tokenizer


def test_a_phrase_is_refused_as_one_entry(en_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BertkitError, match="'protein kinase' is not one word"):
        vocabulary.extend_tokenizer(load_tokenizer(str(en_dir)), ["protein kinase"], tmp_path / "tok")


def test_ids_go_after_added_tokens(en_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_tokenizer(str(en_dir))
    tokenizer.add_tokens(["<gene>"])
    gene = tokenizer.convert_tokens_to_ids("<gene>")
    new = vocabulary.extend_tokenizer(tokenizer, ["protein"], tmp_path / "tok")
    assert new.convert_tokens_to_ids(["<gene>", "protein"]) == [gene, gene + 1]
    assert new.tokenize("<gene> protein") == ["<gene>", "protein"]


def test_ids_go_past_holes_in_the_vocabulary(tmp_path: Path) -> None:
    """A vocabulary with a repeated token (as a vocab.txt with a repeated line loads) has an unused id
    inside it: its highest id is len(tokenizer), which a count-based new id would take over."""
    from transformers import BertTokenizer

    lines = SPECIALS + ["a", "b", "a", "##b", "##a"]  # "a" keeps id 7; id 5 is a hole
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(lines)}, model_max_length=64)
    assert len(tokenizer) == 9 and tokenizer.convert_tokens_to_ids("##a") == 9
    assert vocabulary.first_new_id(tokenizer) == 10
    new = vocabulary.extend_tokenizer(tokenizer, ["abba"], tmp_path / "tok")
    assert new.convert_tokens_to_ids(["##a", "abba"]) == [9, 10] and new.tokenize("abba") == ["abba"]


def test_japanese_words_become_whole_tokens_with_the_same_mecab(ja_dir: Path, tmp_path: Path) -> None:
    tokenizer, found, new = _extended(ja_dir, JA_TEXTS, 5, tmp_path / "tok")
    assert type(new).__name__ == "BertJapaneseTokenizer"
    assert new.mecab_kwargs == tokenizer.mecab_kwargs and new.subword_tokenizer_type == "wordpiece"
    assert not (tmp_path / "tok" / "tokenizer.json").exists()
    old_len = len(tokenizer)
    assert new.convert_tokens_to_ids([w for w, _ in JA_EXPECTED]) == [old_len, old_len + 1, old_len + 2]
    for word, _ in JA_EXPECTED:
        assert new.tokenize(word) == [word]
    text = "半導体メーカーのデータベースを更新した。"
    assert new.tokenize(text) == ["半", "導", "##体", "メーカー", "の", "データベース", "を", "更新", "し", "た", "。"]
    assert new.tokenize("増加した。") == tokenizer.tokenize("増加した。")
    # bertkit's Japanese alignment (the fast path) gives the tokenizer's ids, a MeCab word per new token
    (ids, words), = corpus.tokenize_lines(new, [text])
    assert ids == new(text, add_special_tokens=False)["input_ids"]
    assert words == [0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]


# ---------------------------------------------------------------------------------------------
# The model


def _check_rows(model, original, found, first: int, *, tied: bool) -> None:
    emb = model.get_input_embeddings().weight
    dec = model.get_output_embeddings()
    assert emb.shape[0] == first + len(found) == model.config.vocab_size
    assert (dec.weight is emb) == tied
    assert model.cls.predictions.bias is dec.bias and dec.bias.shape[0] == emb.shape[0]
    o_emb = original.get_input_embeddings().weight
    o_dec = original.get_output_embeddings()
    for k, c in enumerate(found):
        np.testing.assert_allclose(emb[first + k].detach().double().numpy(), _expected_mean(o_emb, c["piece_ids"]),
                                   rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(dec.weight[first + k].detach().double().numpy(),
                                   _expected_mean(o_dec.weight, c["piece_ids"]), rtol=1e-5, atol=1e-6)
        assert dec.bias[first + k].item() == pytest.approx(float(_expected_mean(o_dec.bias, c["piece_ids"])), abs=1e-6)
    # old rows untouched
    np.testing.assert_array_equal(emb[:first].detach().numpy(), o_emb.detach().numpy())
    np.testing.assert_array_equal(dec.bias[:first].detach().numpy(), o_dec.bias.detach().numpy())


def test_new_rows_are_the_mean_of_their_pieces_tied(en_dir: Path, tmp_path: Path) -> None:
    tokenizer, found, new = _extended(en_dir, EN_TEXTS, 2, tmp_path / "tok")
    model, original = _masked_lm(en_dir), _masked_lm(en_dir)
    vocabulary.init_new_embeddings(model, found, vocabulary.first_new_id(tokenizer))
    _check_rows(model, original, found, len(tokenizer), tied=True)
    logits = model(**new("the protein binds", return_tensors="pt")).logits
    assert logits.shape[-1] == len(new)


def test_new_rows_are_the_mean_of_their_pieces_untied(en_untied_dir: Path, tmp_path: Path) -> None:
    tokenizer, found, _ = _extended(en_untied_dir, EN_TEXTS, 2, tmp_path / "tok")
    model, original = _masked_lm(en_untied_dir), _masked_lm(en_untied_dir)
    assert model.get_output_embeddings().weight is not model.get_input_embeddings().weight
    vocabulary.init_new_embeddings(model, found, vocabulary.first_new_id(tokenizer))
    _check_rows(model, original, found, len(tokenizer), tied=False)
    out, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert not np.allclose(out[-1].detach().numpy(), emb[-1].detach().numpy())  # each from its own matrix


@pytest.mark.parametrize("family", ["distilbert", "electra"])
def test_other_wordpiece_families(family: str, tmp_path: Path) -> None:
    """DistilBERT (vocab_projector) and ELECTRA (generator_lm_head, 16-wide factorised embeddings): tied heads
    with their own bias, found through get_output_embeddings."""
    import families
    import torch

    tokenizer = families.build_tokenizer(family, EN_WORDS)
    original = families.build_model(family, tokenizer)
    with torch.no_grad():
        original.get_output_embeddings().bias.normal_()
    original.save_pretrained(tmp_path / "model")
    found = vocabulary.candidates(EN_TEXTS, tokenizer, 2, 3)
    assert [(c["word"], c["count"]) for c in found] == EN_EXPECTED
    new = vocabulary.extend_tokenizer(tokenizer, [c["word"] for c in found], tmp_path / "tok")
    assert new.tokenize("Protein kinases") == ["protein", "kinase", "##s"]
    model, first = _masked_lm(tmp_path / "model"), vocabulary.first_new_id(tokenizer)
    vocabulary.init_new_embeddings(model, found, first)
    emb, head = model.get_input_embeddings().weight, model.get_output_embeddings()
    assert head.weight is emb and emb.shape[0] == len(new) == model.config.vocab_size
    for k, c in enumerate(found):
        np.testing.assert_allclose(emb[first + k].detach().double().numpy(),
                                   _expected_mean(original.get_input_embeddings().weight, c["piece_ids"]), rtol=1e-5, atol=1e-6)
        assert head.bias[first + k].item() == pytest.approx(float(_expected_mean(original.get_output_embeddings().bias,
                                                                                   c["piece_ids"])), abs=1e-6)
    assert model(**new("the protein binds", return_tensors="pt")).logits.shape[-1] == len(new)


@pytest.mark.parametrize("which", ["en", "ja"])
def test_save_and_reload_keep_ids_and_rows(which: str, en_dir: Path, ja_dir: Path, tmp_path: Path) -> None:
    directory, texts, n = (en_dir, EN_TEXTS, 2) if which == "en" else (ja_dir, JA_TEXTS, 5)
    tokenizer, found, new = _extended(directory, texts, n, tmp_path / "tok")
    model, original = _masked_lm(directory), _masked_lm(directory)
    vocabulary.init_new_embeddings(model, found, vocabulary.first_new_id(tokenizer))
    out = tmp_path / "adapted"
    model.save_pretrained(out)
    new.save_pretrained(out)

    again, tok = _masked_lm(out), load_tokenizer(str(out))
    assert tok.get_vocab() == new.get_vocab()
    for k, c in enumerate(found):
        assert tok.tokenize(c["word"]) == [c["word"]] and tok.convert_tokens_to_ids(c["word"]) == len(tokenizer) + k
    _check_rows(again, original, found, len(tokenizer), tied=True)
    for name, tensor in model.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[name].numpy(), tensor.numpy(), err_msg=name)


def test_explicit_ids_and_foreign_pieces(en_dir: Path) -> None:
    model, original = _masked_lm(en_dir), _masked_lm(en_dir)
    rows = model.get_input_embeddings().weight.shape[0]
    vocabulary.init_new_embeddings(model, [{"piece_ids": [7, 8], "id": rows + 1}], rows)  # rows + 0 left as resized
    assert model.config.vocab_size == rows + 2
    np.testing.assert_allclose(model.get_input_embeddings().weight[rows + 1].detach().double().numpy(),
                               _expected_mean(original.get_input_embeddings().weight, [7, 8]), rtol=1e-5, atol=1e-6)
    with pytest.raises(BertkitError, match="are not old tokens"):
        vocabulary.init_new_embeddings(model, [{"word": "x", "piece_ids": [rows + 1]}], rows + 1)


# ---------------------------------------------------------------------------------------------
# Refusals


def test_bpe_tokenizer_is_refused(tmp_path: Path) -> None:
    import families

    tokenizer = families.build_tokenizer("roberta", EN_WORDS + ["protein", "kinase"])
    with pytest.raises(BertkitError) as caught:
        vocabulary.candidates(EN_TEXTS, tokenizer, 2, 3)
    assert caught.value.message.startswith("mlm.add_domain_tokens needs a WordPiece vocabulary")
    assert caught.value.message.endswith("is BPE") and "remove mlm.add_domain_tokens" in caught.value.hint
    with pytest.raises(BertkitError, match="is BPE"):
        vocabulary.extend_tokenizer(tokenizer, ["protein"], tmp_path / "tok")
    assert not (tmp_path / "tok").exists()


def test_character_level_japanese_tokenizer_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "ja-char"
    directory.mkdir()
    tokenizer = load_tokenizer(str(_ja_vocab_dir(directory, "character")))
    with pytest.raises(BertkitError) as caught:
        vocabulary.extend_tokenizer(tokenizer, ["データベース"], tmp_path / "tok")
    assert caught.value.message == (f"mlm.add_domain_tokens needs a WordPiece vocabulary, and the tokenizer of {directory} is "
                                    "character-level (BertJapaneseTokenizer, subword_tokenizer_type=character)")
