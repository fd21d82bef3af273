"""bertkit.japanese: ids identical to BertJapaneseTokenizer, exact offsets, fast path == slow.

Tokenizers are built here from a hand-written vocabulary (so fixed cases have known tokens) and
MeCab with unidic-lite (ipadic where installed). Property tests compare against the tokenizer
itself and against an independent re-normalisation of each token's original characters.
"""

from __future__ import annotations

import importlib.util
import unicodedata

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bertkit.errors import BertkitError

transformers = pytest.importorskip("transformers")
pytest.importorskip("fugashi")
pytest.importorskip("unidic_lite")

from transformers import BertJapaneseTokenizer  # noqa: E402

from bertkit import japanese  # noqa: E402
from bertkit.japanese import Aligned, align, align_batch, is_japanese_tokenizer, word_spans  # noqa: E402
from bertkit.japanese import api  # noqa: E402  (where MAX_TEXT_CHARS is read)
from bertkit.japanese.fast import _SELF_CHECK, _fast_path_for  # noqa: E402
from bertkit.japanese.slow import _slow_align  # noqa: E402

HAS_IPADIC = importlib.util.find_spec("ipadic") is not None

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# Characters the random texts are made of: scripts, widths, normalisation traps, whitespace,
# control and zero-width characters. "ｶ" + "ﾞ" compose under NFKC; "㈱" expands; "…" expands.
HIRAGANA = "あいうえおかきくけこがぎさしすせそただちっつてでとなにぬねのはばぱひふへほまみむめもやゆよらりるれろわをん"
KATAKANA = "アイウエオカガキクケコサシスセソタダチッツテデトナニヌネノハバパヒフヘホマミムメモヤユヨラリルレロワヲンー"
HALF_KATAKANA = "ｱｲｳｴｵｶｷｸｹｺｻｼｽｾｿﾀﾁﾂﾃﾄﾅﾆﾇﾈﾉﾊﾋﾌﾍﾎﾏﾐﾑﾒﾓﾔﾕﾖﾗﾘﾙﾚﾛﾜｦﾝｰﾞﾟ"
KANJI = "日本東京都大阪京府住研究者分析経済政策投資株式会社年度今後"
ASCII = "abcXYZ019 .,!?-()[]"
FULL_WIDTH = "ＡＢＣａｂｃ０１２！？（）［］　"
SYMBOLS = "㈱①②…・「」。、"
EMOJI = ["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇯🇵"]
MARKS = ["\u0301", "\u3099", "\u309a", "\u0323", "\u0308"]
SPACES = [" ", "\t", "\n", "\r", "\u3000", "\u00a0", "\u2028"]
CONTROL = ["\x00", "\x07", "\x1c", "\x85", "\u200b", "\u200d", "\u00ad", "\ufeff"]
CASE = ["İ", "Σ", "ß", "É", "ﬁ", "Å"]
WORDS = ["[SEP]", "[MASK]", "[UNK]", "東京都", "研究者", "ｶﾞｷﾞ", "データ", "café", "CAFÉ", "㈱東京"]


def _vocab() -> list[str]:
    """Specials, every character (NFKC and lower-cased forms too), their ## forms, a few words."""
    chars = set(HIRAGANA + KATAKANA + KANJI + ASCII + "ABCabc012!?()[]().,1ガギグパ")
    for c in HALF_KATAKANA + FULL_WIDTH + SYMBOLS + "".join(CASE):
        chars.update(unicodedata.normalize("NFKC", c).lower())
        chars.update(unicodedata.normalize("NFKC", c))
    chars = sorted(c for c in chars if not c.isspace())
    words = ["東京", "研究", "経済", "政策", "投資", "株式", "会社", "データ", "ます", "cafe", "café", "abc", "ABC"]
    return SPECIALS + chars + ["##" + c for c in chars] + words


@pytest.fixture(scope="module")
def vocab_file(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("ja_vocab") / "vocab.txt"
    path.write_text("".join(t + "\n" for t in _vocab()), encoding="utf-8")
    return str(path)


CONFIGS = {
    "mecab-unidic": dict(word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "unidic_lite"}),
    "mecab-unidic-lower": dict(
        word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "unidic_lite"}, do_lower_case=True
    ),
    "mecab-ipadic": dict(word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "ipadic"}),
    "mecab-char": dict(
        word_tokenizer_type="mecab", mecab_kwargs={"mecab_dic": "unidic_lite"}, subword_tokenizer_type="character"
    ),
    "basic": dict(word_tokenizer_type="basic"),
    "basic-lower": dict(word_tokenizer_type="basic", do_lower_case=True),
    "basic-char": dict(word_tokenizer_type="basic", subword_tokenizer_type="character"),
}
FAST_CONFIGS = {"mecab-unidic", "mecab-unidic-lower", "mecab-ipadic"}


def _make(vocab_file: str, name: str) -> BertJapaneseTokenizer:
    if name == "mecab-ipadic" and not HAS_IPADIC:
        pytest.skip("ipadic is not installed")
    return BertJapaneseTokenizer(vocab_file, **CONFIGS[name])


class _Tokenizers(dict):
    def __repr__(self) -> str:  # hypothesis prints fixtures with a failing example: keep it short
        return f"<tokenizers {sorted(self)}>"


@pytest.fixture(scope="module")
def tokenizers(vocab_file) -> dict[str, BertJapaneseTokenizer]:
    return _Tokenizers(
        (name, BertJapaneseTokenizer(vocab_file, **cfg))
        for name, cfg in CONFIGS.items()
        if HAS_IPADIC or "ipadic" not in name
    )


@pytest.fixture(scope="module")
def ja(tokenizers) -> BertJapaneseTokenizer:
    return tokenizers["mecab-unidic"]


# --- an independent check of one token against its original characters ----------------------------


def _normalise(tok: BertJapaneseTokenizer, s: str) -> str:
    """What the tokenizer's normalisation makes of an original slice, whitespace removed."""
    if tok.word_tokenizer_type == "mecab":
        s = unicodedata.normalize("NFKC", s)
        s = s.lower() if tok.do_lower_case else s
    else:
        s = "".join(c for c in s if c not in "\x00\ufffd" and not unicodedata.category(c).startswith("C") or c in "\t\n\r")
        s = unicodedata.normalize("NFC", s)
        if tok.do_lower_case:
            s = "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")
    if tok.subword_tokenizer_type == "character":
        s = unicodedata.normalize("NFKC", s)
    return "".join(s.split())


def _check_alignment(tok: BertJapaneseTokenizer, text: str, a: Aligned) -> None:
    assert a.input_ids == tok(text, add_special_tokens=False)["input_ids"]
    assert len(a.offsets) == len(a.input_ids) == len(a.word_ids)
    tokens = tok.convert_ids_to_tokens(a.input_ids)
    starts = [s for s, _ in a.offsets]
    assert starts == sorted(starts)
    assert [e for _, e in a.offsets] == sorted(e for _, e in a.offsets)
    for i, (token, (start, end)) in enumerate(zip(tokens, a.offsets)):
        assert 0 <= start < end <= len(text), (token, start, end)
        piece = text[start:end]
        if token in SPECIALS and token != "[UNK]" or piece == token:
            continue
        norm = _normalise(tok, piece)
        if token == "[UNK]":
            # WordPiece never sees whitespace; the character tokenizer turns a "\r" word into [UNK]
            assert norm or tok.subword_tokenizer_type == "character", f"[UNK] covers only {piece!r}"
            continue
        body = token[2:] if token.startswith("##") else token
        shared = any(s < end and start < e for j, (s, e) in enumerate(a.offsets) if j != i)
        if shared:  # one original group made several tokens (㈱ -> ( 株 ), reordered marks)
            assert body in norm, (token, piece)
        else:
            assert norm == body, (token, piece, norm)
    # word ids: 0, 1, 2, ... with a word's tokens together
    assert all(b - a in (0, 1) for a, b in zip([-1] + a.word_ids, a.word_ids))


# --- property tests --------------------------------------------------------------------------------

_pieces = st.one_of(
    st.sampled_from(HIRAGANA),
    st.sampled_from(KATAKANA),
    st.sampled_from(HALF_KATAKANA),
    st.sampled_from(KANJI),
    st.sampled_from(ASCII),
    st.sampled_from(FULL_WIDTH),
    st.sampled_from(SYMBOLS),
    st.sampled_from(EMOJI + MARKS + SPACES + CONTROL + CASE + WORDS),
)
texts = st.lists(_pieces, max_size=24).map("".join)
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
# Cases longer runs found once; kept so every run tries them.
FOUND = ["あaﾞ\u0323", "\u0301\u3099😀", "いいア\x00", "ｱ\u0301😀", "\u200b㈱\u200b", "ΑΣ'Β"]


def _found(test):
    for text in FOUND:
        test = example(text=text)(test)
    return test


@pytest.mark.parametrize("name", list(CONFIGS))
@PROPERTY
@_found
@given(text=texts)
def test_slow_alignment_matches_tokenizer(tokenizers, name, text):
    if name not in tokenizers:
        pytest.skip("ipadic is not installed")
    tok = tokenizers[name]
    _check_alignment(tok, text, align(tok, text, method="slow"))


@pytest.mark.parametrize("name", sorted(FAST_CONFIGS))
@PROPERTY
@_found
@given(text=texts)
def test_fast_path_equals_slow(tokenizers, name, text):
    if name not in tokenizers:
        pytest.skip("ipadic is not installed")
    tok = tokenizers[name]
    fast = align(tok, text, method="fast")
    assert fast == align(tok, text, method="slow")
    assert japanese.token_ids_batch(tok, [text]) == [fast.input_ids]
    _check_alignment(tok, text, fast)


# --- fixed cases: one per normalisation ------------------------------------------------------------


def _slices(tok, text: str, method: str = "auto") -> list[tuple[str, str]]:
    a = align(tok, text, method=method)
    return list(zip(tok.convert_ids_to_tokens(a.input_ids), (text[s:e] for s, e in a.offsets)))


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_full_width_to_half_width(ja, method):
    assert _slices(ja, "ＡＢＣ１２０", method) == [("ABC", "ＡＢＣ"), ("1", "１"), ("##2", "２"), ("##0", "０")]
    # "3" is not in the vocabulary: the whole word "123" is one [UNK] over all three characters
    assert _slices(ja, "１２３", method) == [("[UNK]", "１２３")]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_one_character_becomes_several(ja, method):
    # NFKC: ㈱ -> "(株)" (MeCab: three words) and … -> "...": every token spans the whole character
    assert _slices(ja, "㈱東京…", method) == [
        ("(", "㈱"), ("株", "㈱"), (")", "㈱"), ("東京", "東京"), (".", "…"), (".", "…"), (".", "…")
    ]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_circled_digits(ja, method):
    assert _slices(ja, "①と②", method) == [("1", "①"), ("と", "と"), ("2", "②")]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_half_width_katakana_with_dakuten(ja, method):
    # "ｶﾞ" is two characters that NFKC composes into one "ガ"
    text = "ｶﾞｷﾞｸﾞ"
    assert _slices(ja, text, method) == [("ガ", "ｶﾞ"), ("ギ", "ｷﾞ"), ("##グ", "ｸﾞ")]
    assert word_spans(ja, text) == [(0, 2), (2, 6)]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_combining_marks(ja, method):
    # か + combining dakuten composes to が: the token spans both original characters
    assert _slices(ja, "か\u3099き\u3099", method) == [("が", "か\u3099"), ("ぎ", "き\u3099")]
    # a mark NFKC cannot compose stays a word of its own; its base keeps its own span
    assert _slices(ja, "ん\u0301", method) == [("ん", "ん"), ("[UNK]", "\u0301")]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_whitespace_is_never_inside_a_token(ja, method):
    text = "東京\t大阪\n京都　都 "
    a = align(ja, text, method=method)
    assert [text[s:e] for s, e in a.offsets] == ["東京", "大", "阪", "京", "都", "都"]
    assert word_spans(ja, text) == [(0, 2), (3, 5), (6, 8), (9, 10)]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_unknown_word_spans_the_word(ja, method):
    # 😀 is not in the vocabulary: the whole MeCab word becomes [UNK]
    assert _slices(ja, "文字😀です", method)[-3:] == [("[UNK]", "😀"), ("で", "で"), ("##す", "す")]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_zero_width_and_control_characters(ja, method):
    assert _slices(ja, "東京\u200b都\x07に", method) == [
        ("東京", "東京"), ("[UNK]", "\u200b"), ("都", "都"), ("[UNK]", "\x07"), ("に", "に")
    ]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_special_tokens_in_text_stay_whole(ja, method):
    text = "東京 [SEP] 研究[MASK]"
    a = align(ja, text, method=method)
    tokens = ja.convert_ids_to_tokens(a.input_ids)
    assert tokens == ["東京", "[SEP]", "研究", "[MASK]"]
    assert a.offsets == [(0, 2), (3, 8), (9, 11), (11, 17)]
    assert a.word_ids == [0, 1, 2, 3]


@pytest.mark.parametrize("method", ["fast", "slow"])
def test_mecab_stops_at_nul(ja, method):
    # MeCab reads C strings: the tokenizer itself drops everything after NUL; so do we
    assert _slices(ja, "東京\x00大阪", method) == [("東京", "東京")]


def test_a_text_too_long_for_mecab_is_refused_not_crashed_on(ja, monkeypatch):
    monkeypatch.setattr(api, "MAX_TEXT_CHARS", 11)
    ok = "東京都に住んでいます。"  # 11 characters: at the limit is fine
    assert japanese.token_ids_batch(ja, [ok]) == [ja(ok, add_special_tokens=False)["input_ids"]]
    for call in (japanese.token_ids_batch, align_batch):
        with pytest.raises(BertkitError, match="12 characters .*'東京都に住んでいます。x'.* longer than MeCab"):
            call(ja, ["短い", "東京都に住んでいます。x"])


def test_lower_case_keeps_original_spans(tokenizers):
    tok = tokenizers["mecab-unidic-lower"]
    assert _slices(tok, "ＡＢＣ abc", "fast") == [("abc", "ＡＢＣ"), ("abc", "abc")]
    assert _slices(tok, "İ", "slow") == _slices(tok, "İ", "fast")


def test_basic_tokenizer_strips_accents(tokenizers):
    tok = tokenizers["basic-lower"]
    assert _slices(tok, "CAFÉ café") == [("cafe", "CAFÉ"), ("cafe", "café")]
    # decomposed é: the base letter and its mark are one original group
    assert _slices(tok, "cafe\u0301!") == [("cafe", "cafe\u0301"), ("!", "!")]


def test_character_subwords(tokenizers):
    tok = tokenizers["mecab-char"]
    assert _slices(tok, "ｶﾞ㈱") == [("ガ", "ｶﾞ"), ("(", "㈱"), ("株", "㈱"), (")", "㈱")]


def test_word_spans_cover_their_tokens(ja):
    text = "東京都に住んでいます。"
    spans = word_spans(ja, text)
    assert [text[s:e] for s, e in spans] == ["東京", "都", "に", "住ん", "で", "い", "ます", "。"]
    a = align(ja, text)
    for w, (s, e) in zip(a.word_ids, a.offsets):
        assert spans[w][0] <= s < e <= spans[w][1]


# --- API behaviour ---------------------------------------------------------------------------------


def test_is_japanese_tokenizer(ja):
    assert is_japanese_tokenizer(ja)
    assert not is_japanese_tokenizer(object())


def test_align_batch_equals_align(ja):
    texts = ["東京都", "", "ＡＢＣ [SEP] ㈱", "😀"]
    assert align_batch(ja, texts) == [align(ja, t) for t in texts]


def test_fast_path_is_used_and_verified(ja, tokenizers):
    assert _fast_path_for(ja) is not None
    assert _fast_path_for(tokenizers["basic"]) is None
    with pytest.raises(BertkitError):
        align(tokenizers["mecab-char"], "東京", method="fast")


def test_fast_path_follows_added_tokens(vocab_file):
    tok = _make(vocab_file, "mecab-unidic")
    before = align(tok, "東京都研究")
    tok.add_tokens(["都研"])
    after = align(tok, "東京都研究")
    assert after != before
    assert after.input_ids == tok("東京都研究", add_special_tokens=False)["input_ids"]
    assert after == align(tok, "東京都研究", method="slow")


def test_fast_tokenizer_uses_native_offsets():
    from transformers import BertTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + ["hello", "world", "##s", ",", "!"])}
    tok = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    a = align(tok, "Hello worlds, hello!")
    assert a.input_ids == tok("Hello worlds, hello!", add_special_tokens=False)["input_ids"]
    assert a.offsets == [(0, 5), (6, 11), (11, 12), (12, 13), (14, 19), (19, 20)]
    assert a.word_ids == [0, 1, 1, 2, 3, 4]
    assert word_spans(tok, "Hello worlds") == [(0, 5), (6, 12)]


def test_other_slow_tokenizers_are_refused(vocab_file):
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    with pytest.raises(BertkitError, match="offsets are not available") as err:
        align(BertTokenizerLegacy(vocab_file), "text")
    assert "fast tokenizer" in err.value.hint


def test_unsupported_config_is_refused(vocab_file):
    tok = _make(vocab_file, "mecab-unidic")
    tok.word_tokenizer_type = "sudachi"  # Juman++ and sentencepiece are handled; sudachi is not
    with pytest.raises(BertkitError, match="not implemented"):
        align(tok, "東京")


# --- helper processes for big batches (bertkit.japanese.mecab_pool) ------------------------------


def _mixed_texts() -> list[str]:
    """Every fast-path trap, added tokens and NUL (slow path) among ordinary text, many times over."""
    base = list(_SELF_CHECK) + ["東京都の研究者は[SEP]データを[MASK]分析", "ＡＢＣ㈱ の 株式会社\tです"] + WORDS
    return [f"{t}{i % 7}" if i % 3 else t for i, t in enumerate(base * 12)]


@pytest.fixture
def helpers_on(monkeypatch):
    """Helpers for every batch, however small; the helpers are closed afterwards."""
    from bertkit.japanese import mecab_pool

    monkeypatch.setattr(mecab_pool, "MIN_CHARS", 0)
    monkeypatch.setattr(mecab_pool, "START_CHARS", 0)
    monkeypatch.setenv(mecab_pool.WORKERS_ENV, "2")
    yield mecab_pool
    mecab_pool.shutdown()


@pytest.mark.parametrize("name", sorted(FAST_CONFIGS))
def test_helper_processes_give_the_in_process_answers(tokenizers, helpers_on, monkeypatch, name):
    if name not in tokenizers:
        pytest.skip(f"{name} is not installed")
    tok = tokenizers[name]
    texts = _mixed_texts()
    with_helpers = align_batch(tok, texts)
    ids_with_helpers = japanese.token_ids_batch(tok, texts)
    assert helpers_on._POOLS, "the batch did not go through helper processes"
    monkeypatch.setenv(helpers_on.WORKERS_ENV, "0")
    assert with_helpers == align_batch(tok, texts)
    assert with_helpers == [_slow_align(tok, t) for t in texts]
    assert ids_with_helpers == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]


def test_failed_helpers_fall_back_to_this_process(ja, helpers_on, monkeypatch, caplog):
    monkeypatch.setattr(helpers_on, "_HELPER_CODE", "import sys; sys.exit(3)")
    texts = _mixed_texts()
    with caplog.at_level("WARNING", logger="bertkit.japanese.mecab_pool"):
        got = japanese.token_ids_batch(ja, texts)
    assert got == [ja(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert "failed" in caplog.text and not helpers_on._POOLS


def test_helper_count_setting(monkeypatch):
    from bertkit.japanese import mecab_pool

    monkeypatch.setenv(mecab_pool.WORKERS_ENV, "3")
    assert mecab_pool.configured_workers() == 3
    monkeypatch.setenv(mecab_pool.WORKERS_ENV, "many")
    assert mecab_pool.configured_workers() == 0
    monkeypatch.delenv(mecab_pool.WORKERS_ENV)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert mecab_pool.configured_workers() == 0  # each process of a multi-process run has its core


def test_helpers_start_only_for_a_big_batch_then_serve_smaller_ones(ja, helpers_on, monkeypatch):
    texts = [f"東京都の研究者は{i}件のデータを分析しています。" for i in range(300)]  # no added tokens: one piece each
    chars = sum(map(len, texts))
    expected = [ja(t, add_special_tokens=False)["input_ids"] for t in texts]
    served = []
    real_map = helpers_on._Helpers.map

    def counting(self, chunks, tokens, what):
        served.append(len(chunks))
        return real_map(self, chunks, tokens, what)

    monkeypatch.setattr(helpers_on._Helpers, "map", counting)
    monkeypatch.setattr(helpers_on, "START_CHARS", chars + 1)
    assert japanese.token_ids_batch(ja, texts) == expected and not helpers_on._POOLS  # too small to start them
    monkeypatch.setattr(helpers_on, "START_CHARS", chars)
    assert japanese.token_ids_batch(ja, texts) == expected and len(helpers_on._POOLS) == 1 and len(served) == 1
    monkeypatch.setattr(helpers_on, "START_CHARS", chars + 1)
    assert japanese.token_ids_batch(ja, texts) == expected and len(served) == 2  # running helpers take it
    monkeypatch.setattr(helpers_on, "MIN_CHARS", chars + 1)
    assert japanese.token_ids_batch(ja, texts) == expected and len(served) == 2  # too small even for them


def test_helpers_serve_tokenizers_in_turn_with_each_ones_vocabulary(tokenizers, helpers_on, monkeypatch):
    """A helper builds the ids itself, from each tokenizer's own word cache: two tokenizers that
    share one MeCab (one set of helpers) but not their casing take turns; with room for one
    cache, each turn replaces the other's and must send its own again."""
    monkeypatch.setattr(helpers_on, "_HELPER_SPECS", 1)
    plain, lower = tokenizers["mecab-unidic"], tokenizers["mecab-unidic-lower"]
    texts = [f"{w} CAFÉ の ABC と 東京都{i}" for i, w in enumerate(WORDS * 4)]
    want = {id(t): [t(x, add_special_tokens=False)["input_ids"] for x in texts] for t in (plain, lower)}
    assert want[id(plain)] != want[id(lower)]
    sent = []  # the kind of every request put in a helper's inbox
    real_put = helpers_on.queue.Queue.put

    def recording_put(inbox, item):
        sent.append(item and item[0])
        return real_put(inbox, item)

    monkeypatch.setattr(helpers_on.queue.Queue, "put", recording_put)
    for tok in (plain, lower, plain, lower):
        assert japanese.token_ids_batch(tok, texts) == want[id(tok)]
    assert len(helpers_on._POOLS) == 1 and sent.count("spec") == 4 * 2  # every turn, to both helpers


def test_a_forked_child_never_uses_or_closes_the_parents_helpers(ja, helpers_on, monkeypatch):
    texts = [f"東京都の研究者は{i}件のデータを分析しています。" for i in range(300)]
    expected = [ja(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert japanese.token_ids_batch(ja, texts) == expected
    (parents,) = helpers_on._POOLS.values()
    monkeypatch.setattr(helpers_on.os, "getpid", lambda: parents.owner + 1)  # as if in a forked child
    parents.close()
    assert parents.alive()  # not the child's to close
    assert japanese.token_ids_batch(ja, texts) == expected
    (childs,) = helpers_on._POOLS.values()
    assert childs is not parents and parents.alive()
    childs.close()  # the "child" closes its own
    monkeypatch.undo()
    parents.close()
    assert not parents.alive() and not childs.alive()
