"""Shared fixtures: tiny random BERT models (English WordPiece and Tohoku-style Japanese), built once
per session from vocabularies written here, and small labelled data files. Nothing touches the
network; nothing reads ../shared/data.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """Give transformers' log handler its stream now. It binds ``sys.stderr`` when transformers first
    logs; if that happens inside a ``CliRunner`` invocation, the handler keeps the runner's stream,
    closed once the invocation ends, and every later warning prints "--- Logging error ---" with a
    traceback into some other test's output (seen: test_cli_tools, then test_reliability alone)."""
    import os
    import tempfile

    # precision: auto's probe result and the probe cache of adapt-domain go to a cache of this run's own
    os.environ.setdefault("BERTKIT_CACHE_DIR", tempfile.mkdtemp(prefix="bertkit-test-cache-"))
    from transformers.utils import logging as hf_logging

    hf_logging.get_logger("transformers")

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

POSITIVE = ["good", "great", "wonderful", "excellent", "lovely", "brilliant", "fun", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "weak"]
NEUTRAL = ["the", "a", "movie", "film", "book", "was", "is", "really", "very", "plot", "acting", "and", "story",
           "it", "this", "of", "ending", "music", "quite", "not", "at", "all", "cast", "show"]

JA_SENTENCES = [
    "この映画はとても面白かった。", "この映画はとてもつまらなかった。", "売上高は前年同期比で増加しました。",
    "営業利益は減少しました。", "東京都に本社を置く株式会社です。", "田中さんは大阪で働いています。",
    "新製品の評判は良好です。", "業績は悪化しています。", "ＡＢＣ株式会社は㈱の略称を使う。", "①番目の項目です。",
]
JA_POSITIVE = ["増加しました。", "好調です。", "改善しました。", "良好です。", "上昇しました。"]
JA_NEGATIVE = ["減少しました。", "低迷しています。", "悪化しました。", "不振です。", "下落しました。"]
JA_SUBJECTS = ["売上高は", "営業利益は", "受注は", "業績は", "販売は", "利益は"]


def _save_tiny_model(directory: Path, vocab_size: int, pad_id: int = 0, max_position: int = 128) -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    config = BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_position, pad_token_id=pad_id)
    BertForMaskedLM(config).save_pretrained(directory)


@pytest.fixture(scope="session")
def tiny_en_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with an uncased WordPiece vocabulary (fast tokenizer)."""
    from transformers import BertTokenizer

    directory = tmp_path_factory.mktemp("tiny-en")
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = SPECIALS + [".", ",", "!", "?", "'"] + POSITIVE + NEGATIVE + NEUTRAL + letters + [f"##{c}" for c in letters]
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab=str(directory / "vocab.txt"), model_max_length=128)
    (directory / "vocab.txt").unlink()
    tokenizer.save_pretrained(directory)
    _save_tiny_model(directory, len(vocab))
    return directory


@pytest.fixture(scope="session")
def tiny_ja_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with a Tohoku-style BertJapaneseTokenizer (MeCab + unidic-lite + WordPiece)."""
    import fugashi
    import unidic_lite

    directory = tmp_path_factory.mktemp("tiny-ja")
    tagger = fugashi.GenericTagger(f'-d "{unidic_lite.DICDIR}" -r /dev/null -Owakati')
    words: list[str] = []
    chars: set[str] = set()
    import unicodedata

    for text in JA_SENTENCES + JA_POSITIVE + JA_NEGATIVE + JA_SUBJECTS:
        text = unicodedata.normalize("NFKC", text)
        words += tagger.parse(text).split()
        chars.update(text)
    vocab = list(dict.fromkeys(SPECIALS + words + sorted(chars) + [f"##{c}" for c in sorted(chars)]))
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {
        "tokenizer_class": "BertJapaneseTokenizer",
        "word_tokenizer_type": "mecab",
        "subword_tokenizer_type": "wordpiece",
        "mecab_kwargs": {"mecab_dic": "unidic_lite"},
        "do_lower_case": False,
        "model_max_length": 128,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
    _save_tiny_model(directory, len(vocab))
    return directory


FAMILY_PLACES = ["Paris", "Rome", "Tokyo"]
FAMILY_PEOPLE = ["Anna", "Bob", "Tom"]
FAMILY_NOUNS = ["movie", "film", "book", "plot", "story", "music"]
FAMILY_WORDS = (POSITIVE + NEGATIVE + NEUTRAL + FAMILY_PLACES + FAMILY_PEOPLE + FAMILY_NOUNS
                + ["lives", "in", "met", "How", "The", "paris", "rome", "tokyo", "anna", "bob", "tom"])


@pytest.fixture(scope="session")
def family_model(tmp_path_factory: pytest.TempPathFactory):
    """``family_model(name)`` -> directory of that family's tiny model (``families.py``: BERT, RoBERTa,
    XLM-R, DeBERTa-v3, ModernBERT, ALBERT, ELECTRA, DistilBERT), built once per session."""
    import families

    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = families.save(family, tmp_path_factory.mktemp(family), FAMILY_WORDS)
        return built[family]

    return get


def _review(rng: random.Random, positive: bool) -> str:
    words = rng.sample(NEUTRAL, 4) + [rng.choice(POSITIVE if positive else NEGATIVE)] + rng.sample(NEUTRAL, 2)
    rng.shuffle(words)
    return " ".join(words) + rng.choice([".", "!", ""])


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture()
def sentiment_files(tmp_path: Path) -> dict[str, Path]:
    """Train / validation / test JSONL with string labels that a tiny model can learn."""
    rng = random.Random(0)
    out = {}
    for split, n in (("train", 64), ("validation", 24), ("test", 24)):
        rows = [{"text": _review(rng, i % 2 == 0), "label": "pos" if i % 2 == 0 else "neg"} for i in range(n)]
        out[split] = write_jsonl(tmp_path / f"{split}.jsonl", rows)
    return out


@pytest.fixture()
def ja_sentiment_file(tmp_path: Path) -> Path:
    rng = random.Random(1)
    rows = []
    for i in range(48):
        positive = i % 2 == 0
        rows.append({"text": rng.choice(JA_SUBJECTS) + rng.choice(JA_POSITIVE if positive else JA_NEGATIVE),
                     "label": int(positive)})
    return write_jsonl(tmp_path / "ja.jsonl", rows)


@pytest.fixture()
def tiny_recipe(tmp_path: Path, tiny_en_model: Path, sentiment_files: dict[str, Path]) -> Path:
    """A classification recipe over the tiny English model and the sentiment files; 2 quick epochs."""
    text = f"""# bertkit finetune recipe.yaml
task: classification
model: {tiny_en_model}
output_dir: {tmp_path / 'out'}
seed: 7
max_length: 32
precision: fp32
data:
  train: {sentiment_files['train']}
  validation: {sentiment_files['validation']}
  test: {sentiment_files['test']}
training:
  num_train_epochs: 2
  learning_rate: 5.0e-3
  per_device_train_batch_size: 8
  logging_steps: 2
"""
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path
