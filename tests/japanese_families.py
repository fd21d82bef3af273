"""Tokenizer directories (and tiny random BERTs) shaped like each Japanese model family of the seed's table.

| family | words | subwords | built here as |
|---|---|---|---|
| Tohoku v1 (cl-tohoku/bert-base-japanese) | MeCab + IPAdic | WordPiece | ``tohoku-v1`` |
| Tohoku v3 (cl-tohoku/bert-base-japanese-v3) | MeCab + unidic-lite | WordPiece | ``tohoku-v3`` |
| Kyoto (ku-nlp BERT, Juman++ words) | Juman++ | WordPiece | ``kyoto`` |
| NICT BERT | MeCab + JUMAN dictionary (``jumandic``) | WordPiece | ``nict`` |
| Waseda RoBERTa, ``-with-auto-jumanpp`` | Juman++ | SentencePiece | ``waseda`` |

Each is a ``BertJapaneseTokenizer`` config with a vocabulary built from the words its own splitter
gives on ``conftest.JA_SENTENCES`` (so most words are whole tokens and the rest split into pieces).
Juman++ is the test stand-in ``tests/jumanpp_stub/jumanpp``: put ``STUB_DIR`` on ``PATH`` first.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

STUB_DIR = Path(__file__).resolve().parent / "jumanpp_stub"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
FAMILIES = ("tohoku-v1", "tohoku-v3", "kyoto", "nict", "waseda")


def mecab_option(dictionary: str) -> str:
    import importlib
    import os

    dicdir = importlib.import_module(dictionary).DICDIR
    return f'-d "{dicdir}" -r "{os.path.join(dicdir, "mecabrc")}"'


def config(family: str) -> dict:
    base = {"tokenizer_class": "BertJapaneseTokenizer", "do_lower_case": False, "model_max_length": 128}
    if family == "tohoku-v1":
        return {**base, "word_tokenizer_type": "mecab", "subword_tokenizer_type": "wordpiece",
                "mecab_kwargs": {"mecab_dic": "ipadic"}}
    if family == "tohoku-v3":
        return {**base, "word_tokenizer_type": "mecab", "subword_tokenizer_type": "wordpiece",
                "mecab_kwargs": {"mecab_dic": "unidic_lite"}}
    if family == "kyoto":
        return {**base, "word_tokenizer_type": "jumanpp", "subword_tokenizer_type": "wordpiece"}
    if family == "nict":
        return {**base, "word_tokenizer_type": "mecab", "subword_tokenizer_type": "wordpiece",
                "mecab_kwargs": {"mecab_dic": None, "mecab_option": mecab_option("jumandic")}}
    if family == "waseda":
        return {**base, "word_tokenizer_type": "jumanpp", "subword_tokenizer_type": "sentencepiece"}
    raise ValueError(family)


def words_of(family: str, texts: list[str]) -> list[list[str]]:
    """The family's own words for each text (MeCab with its dictionary, or the Juman++ stand-in)."""
    if config(family)["word_tokenizer_type"] == "jumanpp":
        import importlib.machinery
        import importlib.util

        loader = importlib.machinery.SourceFileLoader("jumanpp_stub", str(STUB_DIR / "jumanpp"))
        spec = importlib.util.spec_from_loader("jumanpp_stub", loader)
        stub = importlib.util.module_from_spec(spec)
        loader.exec_module(stub)
        return [[m for m in stub.morphemes(t) if m.strip()] for t in texts]
    import fugashi

    cfg = config(family)["mecab_kwargs"]
    option = cfg.get("mecab_option") or mecab_option(cfg["mecab_dic"])
    tagger = fugashi.GenericTagger(option + " -Owakati")
    return [tagger.parse(t).split() for t in texts]


def save_tokenizer(family: str, directory: Path, texts: list[str]) -> Path:
    """Write the family's tokenizer files into ``directory`` (a vocabulary from ``texts``)."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = [unicodedata.normalize("NFKC", t) for t in texts]
    words = [w for ws in words_of(family, texts) for w in ws]
    chars = sorted({c for t in texts for c in t if not c.isspace()})
    cfg = config(family)
    if cfg["subword_tokenizer_type"] == "sentencepiece":
        import sentencepiece as spm

        corpus = directory / "corpus.txt"
        corpus.write_text("\n".join(" ".join(ws) for ws in words_of(family, texts)) * 3 + "\n", encoding="utf-8")
        spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(directory / "spiece"), vocab_size=120, hard_vocab_limit=False,
                                       model_type="unigram", character_coverage=1.0, pad_id=0, unk_id=1, bos_id=-1,
                                       eos_id=-1, user_defined_symbols=["[CLS]", "[SEP]", "[MASK]"],
                                       unk_piece="[UNK]", pad_piece="[PAD]", minloglevel=2)
        corpus.unlink()
        (directory / "spiece.vocab").unlink()
        (directory / "vocab.txt").write_text("\n".join(SPECIALS) + "\n", encoding="utf-8")  # the model is the vocabulary
    else:
        vocab = list(dict.fromkeys(SPECIALS + words + chars + [f"##{c}" for c in chars]))
        (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False), encoding="utf-8")
    return directory


def save(family: str, directory: Path, texts: list[str]) -> Path:
    """The tokenizer and a tiny random BERT with its vocabulary size."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM

    save_tokenizer(family, directory, texts)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
    BertForMaskedLM(config).save_pretrained(directory)
    return directory


# Fast SentencePiece tokenizers: the models that read pre-segmented text (ku-nlp DeBERTa-v2, nlp-waseda
# RoBERTa: words joined by spaces, Juman++) and the newer ones that read raw text (ModernBERT-Ja,
# llm-jp-modernbert, rinna: one SentencePiece over the raw text).
FAST_FAMILIES = ("ku-deberta", "sp-raw")


def save_fast(family: str, directory: Path, texts: list[str]) -> Path:
    """A fast SentencePiece (unigram) tokenizer and a tiny random model of the family's architecture."""
    import torch
    import transformers as tf
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    directory.mkdir(parents=True, exist_ok=True)
    texts = [unicodedata.normalize("NFKC", t) for t in texts]
    lines = [" ".join(ws) for ws in words_of("kyoto", texts)] if family == "ku-deberta" else texts
    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    specials = ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"] if family == "ku-deberta" else ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.UnigramTrainer(vocab_size=150, special_tokens=specials, unk_token=specials[3], show_progress=False,
                                      initial_alphabet=sorted({c for t in texts for c in t if not c.isspace()}))
    tok.train_from_iterator(lines * 3, trainer)
    vocab = [(p, s) for p, s in json.loads(tok.to_str())["model"]["vocab"]]
    torch.manual_seed(0)
    tiny = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
    if family == "ku-deberta":
        tokenizer = tf.DebertaV2Tokenizer(vocab=vocab, unk_id=3, model_max_length=128)
        config = tf.DebertaV2Config(**tiny, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                    type_vocab_size=0, relative_attention=True, position_buckets=32,
                                    pos_att_type=["p2c", "c2p"], position_biased_input=False, max_position_embeddings=128)
        model = tf.DebertaV2ForMaskedLM(config)
    else:
        tokenizer = tf.XLMRobertaTokenizer(vocab=vocab, model_max_length=128)
        config = tf.XLMRobertaConfig(**tiny, vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                                     type_vocab_size=1, max_position_embeddings=128 + tokenizer.pad_token_id + 1)
        model = tf.XLMRobertaForMaskedLM(config)
    tokenizer.save_pretrained(directory)
    model.save_pretrained(directory)
    return directory
