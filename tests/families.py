"""Tiny random models of every BERT-family encoder bertkit serves, each with its real tokenizer kind.

Each family gets the tokenizer class its hub models use, trained here on a small English corpus
with the ``tokenizers`` library (nothing is downloaded), and a 2-layer, 32-wide random model whose
config has the family's shape: RoBERTa's ``type_vocab_size 1`` and position offset, DeBERTa-v3's
``type_vocab_size 0`` and relative attention, ALBERT's factorised embeddings, ModernBERT's
``[CLS] A [SEP]`` byte-level BPE without ``token_type_ids``. Models are saved with their masked-LM
head, so every task (and ``adapt-domain``) can start from them.

What this does not build: Japanese families (``conftest.tiny_ja_model`` and the Japanese tests).
"""

from __future__ import annotations

import string
from pathlib import Path

FAMILIES = ("bert", "distilbert", "electra", "albert", "roberta", "xlm-roberta", "deberta-v2", "modernbert")

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}


def corpus(words: list[str]) -> list[str]:
    """Training text for the tokenizers: the words the tests use, in both cases, and every character."""
    chars = string.ascii_letters + string.digits + string.punctuation
    lines = [" ".join(words), " ".join(w.capitalize() for w in words), " ".join(chars), chars]
    return lines * 3


def _bpe(words: list[str], specials: list[str], vocab_size: int = 400):
    """Byte-level BPE (RoBERTa's kind): vocab dict and merges."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(words), trainer)
    return tok


def _unigram(words: list[str], specials: list[str], unk: str, vocab_size: int = 300) -> list[tuple[str, float]]:
    """SentencePiece-style unigram pieces with scores (XLM-R, DeBERTa-v2/v3 and ALBERT's kind)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=specials, unk_token=unk,
                                      show_progress=False, initial_alphabet=list(string.printable.strip()))
    tok.train_from_iterator(corpus(words), trainer)
    return [(piece, score) for piece, score in __import__("json").loads(tok.to_str())["model"]["vocab"]]


def _wordpiece_vocab(words: list[str]) -> dict[str, int]:
    letters = string.ascii_lowercase + string.digits
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *string.punctuation, *dict.fromkeys(w.lower() for w in words),
             *letters, *(f"##{c}" for c in letters)]
    return {t: i for i, t in enumerate(dict.fromkeys(vocab))}


def build_tokenizer(family: str, words: list[str]):
    import transformers as tf

    if family in ("bert", "distilbert", "electra"):
        cls = {"bert": tf.BertTokenizer, "distilbert": tf.DistilBertTokenizer, "electra": tf.ElectraTokenizer}[family]
        return cls(vocab=_wordpiece_vocab(words), model_max_length=128)
    if family == "roberta":
        bpe = _bpe(words, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        vocab = bpe.get_vocab()
        merges = [tuple(m) for m in __import__("json").loads(bpe.to_str())["model"]["merges"]]
        return tf.RobertaTokenizer(vocab=vocab, merges=merges, model_max_length=128)
    if family == "xlm-roberta":
        return tf.XLMRobertaTokenizer(vocab=_unigram(words, ["<s>", "<pad>", "</s>", "<unk>", "<mask>"], "<unk>"),
                                      model_max_length=128)
    if family == "deberta-v2":
        return tf.DebertaV2Tokenizer(vocab=_unigram(words, ["[PAD]", "[CLS]", "[SEP]", "[UNK]", "[MASK]"], "[UNK]"),
                                     unk_id=3, model_max_length=128)
    if family == "albert":
        return tf.AlbertTokenizer(vocab=_unigram(words, ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"], "<unk>"),
                                  model_max_length=128)
    if family == "modernbert":
        from tokenizers import processors

        bpe = _bpe(words, ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"])
        cls_id, sep_id = bpe.token_to_id("[CLS]"), bpe.token_to_id("[SEP]")
        bpe.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        return tf.PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                          pad_token="[PAD]", mask_token="[MASK]", model_max_length=128,
                                          model_input_names=["input_ids", "attention_mask"])
    raise ValueError(f"unknown family {family}")


def build_model(family: str, tokenizer, max_position: int = 128):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    ids = {"vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id}
    if family == "bert":
        return tf.BertForMaskedLM(tf.BertConfig(**TINY, **ids, max_position_embeddings=max_position))
    if family == "distilbert":
        config = tf.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=max_position, **ids)
        return tf.DistilBertForMaskedLM(config)
    if family == "electra":
        config = tf.ElectraConfig(embedding_size=16, **TINY, max_position_embeddings=max_position, **ids)
        return tf.ElectraForMaskedLM(config)
    if family == "albert":
        config = tf.AlbertConfig(embedding_size=16, **TINY, max_position_embeddings=max_position, **ids)
        return tf.AlbertForMaskedLM(config)
    if family in ("roberta", "xlm-roberta"):
        # RoBERTa positions start after the padding index: max_position + pad + 1 rows
        cfg_cls, model_cls = ((tf.RobertaConfig, tf.RobertaForMaskedLM) if family == "roberta"
                              else (tf.XLMRobertaConfig, tf.XLMRobertaForMaskedLM))
        config = cfg_cls(**TINY, **ids, type_vocab_size=1, max_position_embeddings=max_position + ids["pad_token_id"] + 1,
                         bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
        return model_cls(config)
    if family == "deberta-v2":  # DeBERTa-v3's shape: no token types, relative attention only
        config = tf.DebertaV2Config(**TINY, **ids, type_vocab_size=0, max_position_embeddings=max_position,
                                    relative_attention=True, position_buckets=32, pos_att_type=["p2c", "c2p"],
                                    position_biased_input=False, norm_rel_ebd="layer_norm", share_att_key=True)
        return tf.DebertaV2ForMaskedLM(config)
    if family == "modernbert":
        config = tf.ModernBertConfig(**TINY, **ids, max_position_embeddings=max_position, local_attention=16,
                                     cls_token_id=tokenizer.cls_token_id, sep_token_id=tokenizer.sep_token_id,
                                     bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id)
        return tf.ModernBertForMaskedLM(config)
    raise ValueError(f"unknown family {family}")


def save(family: str, directory: Path, words: list[str]) -> Path:
    tokenizer = build_tokenizer(family, words)
    tokenizer.save_pretrained(directory)
    build_model(family, tokenizer).save_pretrained(directory)
    return directory
