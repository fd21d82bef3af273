"""The seed's Japanese model table, row by row, on tokenizer directories shaped like each family
(``japanese_families.py``): ids equal transformers' own tokenizer, spans slice the text, and NER, QA
and MLM run with the families that are not Tohoku's. Juman++ is the stand-in in ``tests/jumanpp_stub``.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

import japanese_families as jf
from bertkit.cli import app
from conftest import JA_SENTENCES, write_jsonl

runner = CliRunner()
TEXTS = ["東京都に本社を置く株式会社です。", "田中さんは 大阪で\n働いています。", "ＡＢＣ㈱の売上高は1,000円、増加しました。"]


@pytest.fixture(autouse=True)
def jumanpp_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", f"{jf.STUB_DIR}{os.pathsep}{os.environ['PATH']}")


@pytest.fixture(scope="session")
def ja_family(tmp_path_factory: pytest.TempPathFactory):
    """``ja_family(name)`` -> a directory with that family's tokenizer and a tiny random model."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            old = os.environ["PATH"]
            os.environ["PATH"] = f"{jf.STUB_DIR}{os.pathsep}{old}"  # the tokenizer starts jumanpp when it loads
            try:
                directory = tmp_path_factory.mktemp(family)
                save = jf.save_fast if family in jf.FAST_FAMILIES else jf.save
                built[family] = save(family, directory, JA_SENTENCES + TEXTS)
            finally:
                os.environ["PATH"] = old
        return built[family]

    return get


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def token_rows(directory: Path, texts: list[str], *options: str) -> list[list[dict]]:
    result = invoke("tokenize", directory, *texts, "--json", *options)
    assert result.exit_code == 0, result.output
    return [t["tokens"] for t in json.loads(result.stdout)]


@pytest.mark.parametrize("family", jf.FAMILIES + ("sp-raw",))
def test_tokenize_ids_equal_transformers_and_spans_slice_the_text(family: str, ja_family) -> None:
    from transformers import AutoTokenizer

    directory = ja_family(family)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    texts = JA_SENTENCES + TEXTS
    for text, rows in zip(texts, token_rows(directory, texts)):
        assert [r["id"] for r in rows] == tokenizer(text)["input_ids"], text
        for r in rows:
            if r["start"] is not None and r["end"] > r["start"]:
                assert text[r["start"]:r["end"]] == r["text"] and r["text"].strip() == r["text"], (text, r)


def test_pre_segmented_input_has_the_models_ids_and_raw_text_spans(ja_family) -> None:
    from transformers import AutoTokenizer

    from bertkit.japanese.presegment import Segmenter

    directory = ja_family("ku-deberta")
    tokenizer = AutoTokenizer.from_pretrained(directory)
    segmenter = Segmenter("jumanpp")
    texts = JA_SENTENCES + TEXTS
    for text, rows in zip(texts, token_rows(directory, texts, "--pre-segment", "jumanpp")):
        segmented = segmenter.segment(text)[0]
        assert " " in segmented
        assert [r["id"] for r in rows] == tokenizer(segmented)["input_ids"], segmented
        for r in rows:
            if r["start"] is not None and r["end"] > r["start"]:
                assert text[r["start"]:r["end"]] == r["text"] and " " not in r["text"], (text, r)
        words = {r["word_id"] for r in rows if r["word_id"] is not None}
        assert len(words) == len(segmenter.words(text))  # the segmenter's words are the word ids


def test_sentencepiece_words_on_japanese_text_are_mecab_words(ja_family) -> None:
    """A raw-text SentencePiece model's own words are whitespace-separated (a whole Japanese sentence);
    NER labels and whole-word masks need MeCab's words."""
    import fugashi
    import unidic_lite
    from transformers import AutoTokenizer

    from bertkit import corpus

    tokenizer = AutoTokenizer.from_pretrained(ja_family("sp-raw"))
    tagger = fugashi.GenericTagger(f'-d "{unidic_lite.DICDIR}" -r /dev/null')
    for text in JA_SENTENCES[:6]:
        starts, pos = set(), 0
        for node in tagger(text):
            pos = text.index(node.surface, pos)
            starts.add(pos)
            pos += len(node.surface)
        ((ids, words),) = corpus.tokenize_lines(tokenizer, [text])
        offsets = [(s, e) for s, e in __import__("bertkit.japanese", fromlist=["align"]).align(tokenizer, text).offsets]
        assert len(set(words)) > 1 and words == sorted(words)
        covering = [k for k, (s, e) in enumerate(offsets) if e > s]
        for k in range(len(words) - 1):  # a lone ▁ (an empty span) belongs to the word after it
            if offsets[k][1] == offsets[k][0]:
                assert words[k] == words[k + 1]
        for before, k in zip(covering, covering[1:]):
            # a token that starts a MeCab word starts a word; one inside a MeCab word continues it
            assert (words[k] != words[before]) == (offsets[k][0] in starts), (text, k)


def ner_rows(rng: random.Random, n: int) -> list[dict]:
    rows = []
    for _ in range(n):
        person, place = rng.choice(["田中", "中田"]), rng.choice(["大阪", "東京"])
        text = f"{person}さんは{place}で働いています。"
        rows.append({"text": text, "entities": [{"span": [0, 2], "type": "人名"}, {"span": [5, 7], "type": "地名"}]})
    return rows


@pytest.mark.parametrize("family,options", [("kyoto", []), ("waseda", []), ("sp-raw", []),
                                            ("ku-deberta", ["japanese.pre_segment=jumanpp"])])
def test_ner_trains_and_predicts_exact_spans(family: str, options: list[str], ja_family, tmp_path: Path) -> None:
    rng = random.Random(5)
    train, valid = write_jsonl(tmp_path / "train.jsonl", ner_rows(rng, 40)), write_jsonl(tmp_path / "valid.jsonl", ner_rows(rng, 8))
    out = tmp_path / "out"
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ja-ner-wikipedia.yaml"
    result = invoke("finetune", recipe, f"model={ja_family(family)}", f"output_dir={out}", f"data.train={train}",
                    f"data.validation={valid}", "max_length=32", "precision=fp32", "training.num_train_epochs=2",
                    "training.learning_rate=0.005", "training.per_device_train_batch_size=8", *options)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["validation"]
    assert metrics["n_true"] == 16
    for row in read_jsonl(out / "predictions.jsonl"):
        for e in row["gold"] + row["predicted"]:
            assert row["text"][e["start"]:e["end"]] == e["text"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": t} for t in TEXTS])
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    for text, row in zip(TEXTS, read_jsonl(tmp_path / "p.jsonl")):
        for e in row["entities"]:
            assert text[e["start"]:e["end"]] == e["text"] and e["text"].strip() == e["text"]


def qa_file(path: Path, rng: random.Random, n: int) -> Path:
    facts = [("売上高は", "増加しました。"), ("営業利益は", "減少しました。"), ("業績は", "悪化しています。"),
             ("受注は", "好調です。"), ("販売は", "低迷しています。")]
    paragraphs = []
    for i in range(n):
        chosen = rng.sample(facts, 3)
        context = "".join(s + p for s, p in chosen)
        subject, predicate = chosen[rng.randrange(3)]
        answer = predicate.rstrip("。")
        start = context.index(subject + predicate) + len(subject)
        paragraphs.append({"context": context, "qas": [{"id": f"q{i}", "question": f"{subject}どうなりましたか？",
                                                        "answers": [{"text": answer, "answer_start": start}]}]})
    path.write_text(json.dumps({"data": [{"title": "t", "paragraphs": paragraphs}]}, ensure_ascii=False), encoding="utf-8")
    return path


@pytest.mark.parametrize("family,options", [("waseda", []), ("ku-deberta", ["japanese.pre_segment=jumanpp"])])
def test_qa_answers_slice_the_context(family: str, options: list[str], ja_family, tmp_path: Path) -> None:
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "jsquad.yaml"
    out = tmp_path / "out"
    train = qa_file(tmp_path / "train.json", random.Random(1), 32)
    result = invoke("finetune", recipe, f"model={ja_family(family)}", f"output_dir={out}", "data.dataset=null",
                    f"data.train={train}", "data.validation=null", "data.validation_size=0.25", "max_length=48",
                    "qa.doc_stride=16", "precision=fp32", "training.num_train_epochs=1",
                    "training.per_device_train_batch_size=8", *options)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["validation"]["metric_lang"] == "ja"  # JGLUE's scores
    for row in read_jsonl(out / "predictions.jsonl"):
        if row["answer"]:
            assert row["answer"].strip() == row["answer"]
    paragraphs = json.loads(qa_file(tmp_path / "test.json", random.Random(2), 4).read_text())["data"][0]["paragraphs"]
    source = write_jsonl(tmp_path / "in.jsonl", [{"question": p["qas"][0]["question"], "context": p["context"]}
                                                 for p in paragraphs])
    result = invoke("predict", out, source, "--output", tmp_path / "p.jsonl")
    assert result.exit_code == 0, result.output
    for p, paragraph in zip(read_jsonl(tmp_path / "p.jsonl"), paragraphs):
        assert paragraph["context"][p["start"]:p["end"]] == p["answer"] and p["answer"]


@pytest.mark.parametrize("family,options", [("kyoto", []), ("ku-deberta", ["japanese.pre_segment=jumanpp"])])
def test_adapt_domain_masks_juman_words(family: str, options: list[str], ja_family, tmp_path: Path) -> None:
    corpus_file = tmp_path / "ja.txt"
    corpus_file.write_text("\n".join(JA_SENTENCES * 6) + "\n", encoding="utf-8")
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "medical-ja-mlm.yaml"
    out = tmp_path / "out"
    result = invoke("adapt-domain", recipe, f"model={ja_family(family)}", f"output_dir={out}", "data.dataset=null",
                    f"data.train={corpus_file}", "data.validation=null", "data.validation_size=0.2", "max_length=32",
                    "precision=fp32", "training.num_train_epochs=1", "training.per_device_train_batch_size=8", *options)
    assert result.exit_code == 0, result.output
    assert json.loads((out / "metrics.json").read_text())["validation"]["perplexity"] > 1


def test_without_jumanpp_the_run_stops_in_one_line_and_writes_nothing(ja_family, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    directory = ja_family("kyoto")
    monkeypatch.setenv("PATH", os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != str(jf.STUB_DIR)))
    if shutil.which("jumanpp"):
        pytest.skip("a real Juman++ is installed")
    train = write_jsonl(tmp_path / "train.jsonl", ner_rows(random.Random(0), 8))
    recipe = Path(__file__).resolve().parent.parent / "recipes" / "ja-ner-wikipedia.yaml"
    out = tmp_path / "out"
    result = invoke("finetune", recipe, f"model={directory}", f"output_dir={out}", f"data.train={train}", "data.validation=null")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("error: ") and "Juman++" in lines[0] and "jumanpp" in lines[0]
    assert "Traceback" not in result.output
    assert not out.exists() and not out.with_name("out.partial").exists()
    result = invoke("tokenize", directory, "東京")
    assert result.exit_code == 1 and "Juman++" in result.output


def test_mecab_dictionary_comes_from_the_config_and_the_recipe(ja_family, tmp_path: Path) -> None:
    import fugashi

    text = "東京都に本社を置く株式会社です。"
    ipadic = fugashi.GenericTagger(jf.mecab_option("ipadic") + " -Owakati").parse(text).split()
    unidic = fugashi.GenericTagger(jf.mecab_option("unidic_lite") + " -Owakati").parse(text).split()
    assert ipadic != unidic  # the dictionaries cut this text differently, so the test can tell

    def words(directory: Path, *options: str) -> list[str]:
        (rows,) = token_rows(directory, [text], *options)
        spans: dict[int, list[int]] = {}
        for r in rows:
            if r["word_id"] is not None:
                spans.setdefault(r["word_id"], []).extend([r["start"], r["end"]])
        return [text[min(s):max(s)] for s in spans.values()]

    assert words(ja_family("tohoku-v1")) == ipadic  # from the tokenizer's config
    unnamed = tmp_path / "unnamed"  # a config naming no dictionary (as Tohoku v1's): transformers' unidic-lite, and a note
    shutil.copytree(ja_family("tohoku-v1"), unnamed)
    config = json.loads((unnamed / "tokenizer_config.json").read_text())
    config.pop("mecab_kwargs")
    (unnamed / "tokenizer_config.json").write_text(json.dumps(config))
    result = invoke("tokenize", unnamed, text)
    assert result.exit_code == 0 and "names no MeCab dictionary" in result.output and "japanese.mecab_dic=ipadic" in result.output
    assert words(ja_family("tohoku-v1"), "--mecab-dic", "unidic_lite") == unidic  # the recipe's choice wins
    nict = fugashi.GenericTagger(jf.mecab_option("jumandic") + " -Owakati").parse(text).split()
    assert words(ja_family("tohoku-v3"), "--mecab-dic", "jumandic") == nict
    result = invoke("tokenize", ja_family("kyoto"), text, "--mecab-dic", "ipadic")
    assert result.exit_code == 1 and "applies to tokenizers that split words with MeCab" in result.output
    try:
        import unidic  # noqa: F401
    except ImportError:
        result = invoke("tokenize", ja_family("tohoku-v3"), text, "--mecab-dic", "unidic")
        assert result.exit_code == 1 and "'unidic' is not installed" in result.output and "unidic download" in result.output
