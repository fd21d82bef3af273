"""The standard recipe a user already has: the Hugging Face example way, one task per sub-command.

    python bench/standard_recipe.py classification --train T.jsonl --test E.jsonl --model DIR --out result.json ...
    python bench/standard_recipe.py ner            --train T.conll --test E.conll ...
    python bench/standard_recipe.py qa             --train T.jsonl --test E.jsonl --max-length 256 --stride 64 ...

Written for ``bench/parity.py`` from the approach of the transformers examples (``run_glue``,
``run_ner``, ``run_qa``), not copied from them, and kept as plain as a user's 50-line script:
``padding="max_length"``, fp32, the stock ``Trainer`` with its own defaults (no warm-up, no weight
decay, random batches, no evaluation or checkpoints while training), the first sub-token of each word
labelled, the last epoch's model evaluated once on the test rows. Metrics: accuracy; entity F1 with
seqeval (default mode) on words; SQuAD v1.1 exact match / F1 with the official normalisation, the
answer chosen as ``run_qa`` does (n-best start and end logits, longest answer 30 tokens).

Deliberately not imported from bertkit, so that nothing bertkit does leaks into the baseline; the
only shared piece is the model directory the alias ``minilm-l6`` points at (passed in ``--model``).
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import string
import time
from pathlib import Path

STARTED = time.perf_counter()


def read_conll(path: str) -> tuple[list[list[str]], list[list[str]]]:
    sentences, tags, words, labels = [], [], [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(words)
                tags.append(labels)
            words, labels = [], []
            continue
        parts = line.split()
        words.append(parts[0])
        labels.append(parts[-1])
    if words:
        sentences.append(words)
        tags.append(labels)
    return sentences, tags


def training_args(args, work: str):
    import torch
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=work, num_train_epochs=args.epochs, learning_rate=args.lr,
                             per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=64,
                             seed=args.seed, save_strategy="no", eval_strategy="no", report_to="none",
                             logging_steps=50, use_cpu=not torch.cuda.is_available())


def classification(args) -> dict:
    import numpy as np
    from datasets import load_dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, Trainer

    raw = load_dataset("json", data_files={"train": args.train, "test": args.test})
    labels = sorted(set(raw["train"]["label"]))
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    encoded = raw.map(lambda b: tokenizer(b["text"], padding="max_length", truncation=True,
                                          max_length=args.max_length), batched=True)
    encoded = encoded.map(lambda b: {"labels": [labels.index(x) for x in b["label"]]}, batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(args.model, num_labels=len(labels))
    trainer = Trainer(model=model, args=training_args(args, args.work), train_dataset=encoded["train"])
    trainer.train()
    logits = trainer.predict(encoded["test"]).predictions
    return {"accuracy": float(np.mean(logits.argmax(-1) == np.array(encoded["test"]["labels"])))}


def ner(args) -> dict:
    import numpy as np
    from datasets import Dataset
    from seqeval.metrics import f1_score, precision_score, recall_score
    from transformers import AutoModelForTokenClassification, AutoTokenizer, Trainer

    train_words, train_tags = read_conll(args.train)
    test_words, test_tags = read_conll(args.test)
    names = sorted({t for s in train_tags for t in s}, key=lambda t: (t != "O", t))
    label_id = {t: i for i, t in enumerate(names)}
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def encode(words, tags):
        enc = tokenizer(words, is_split_into_words=True, truncation=True, padding="max_length",
                        max_length=args.max_length)
        all_labels = []
        for i, sentence_tags in enumerate(tags):
            previous, row = None, []
            for w in enc.word_ids(i):
                row.append(-100 if w is None or w == previous else label_id.get(sentence_tags[w], 0))
                previous = w
            all_labels.append(row)
        enc["labels"] = all_labels
        return Dataset.from_dict(dict(enc))

    model = AutoModelForTokenClassification.from_pretrained(
        args.model, num_labels=len(names), id2label=dict(enumerate(names)), label2id=label_id)
    trainer = Trainer(model=model, args=training_args(args, args.work), train_dataset=encode(train_words, train_tags))
    trainer.train()
    test = encode(test_words, test_tags)
    out = trainer.predict(test)
    predicted, gold = [], []
    for logits, labels, tags in zip(out.predictions, test["labels"], test_tags):
        ids = np.asarray(logits).argmax(-1)
        pred = [names[p] for p, g in zip(ids, labels) if g != -100]
        predicted.append(pred + ["O"] * (len(tags) - len(pred)))  # words cut by truncation count as O
        gold.append(tags)
    return {"f1": f1_score(gold, predicted), "precision": precision_score(gold, predicted),
            "recall": recall_score(gold, predicted)}


def _normalize(s: str) -> str:
    s = "".join(ch for ch in s.lower() if ch not in set(string.punctuation))
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", s).split())


def _f1(prediction: str, gold: str) -> float:
    p, g = _normalize(prediction).split(), _normalize(gold).split()
    same = sum((collections.Counter(p) & collections.Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def qa(args) -> dict:
    import numpy as np
    from datasets import load_dataset
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer, Trainer

    raw = load_dataset("json", data_files={"train": args.train, "test": args.test})
    tokenizer = AutoTokenizer.from_pretrained(args.model)

    def windows(batch):
        return tokenizer([q.lstrip() for q in batch["question"]], batch["context"], truncation="only_second",
                         max_length=args.max_length, stride=args.stride, return_overflowing_tokens=True,
                         return_offsets_mapping=True, padding="max_length")

    def train_features(batch):
        enc = windows(batch)
        starts, ends = [], []
        for i, offsets in enumerate(enc["offset_mapping"]):
            answers = batch["answers"][enc["overflow_to_sample_mapping"][i]]
            first = answers["answer_start"][0]
            last = first + len(answers["text"][0])
            seq = enc.sequence_ids(i)
            ctx = [k for k, s in enumerate(seq) if s == 1]
            if offsets[ctx[0]][0] > first or offsets[ctx[-1]][1] < last:
                starts.append(0)
                ends.append(0)
                continue
            starts.append(next(k for k in ctx if offsets[k][1] > first))
            ends.append(next(k for k in reversed(ctx) if offsets[k][0] < last))
        enc["start_positions"], enc["end_positions"] = starts, ends
        enc.pop("offset_mapping")
        enc.pop("overflow_to_sample_mapping")
        return enc

    def test_features(batch):
        enc = windows(batch)
        enc["example_id"] = [batch["id"][j] for j in enc.pop("overflow_to_sample_mapping")]
        enc["offset_mapping"] = [[o if enc.sequence_ids(i)[k] == 1 else None for k, o in enumerate(offsets)]
                                 for i, offsets in enumerate(enc["offset_mapping"])]
        return enc

    train = raw["train"].map(train_features, batched=True, remove_columns=raw["train"].column_names)
    test = raw["test"].map(test_features, batched=True, remove_columns=raw["test"].column_names)
    model = AutoModelForQuestionAnswering.from_pretrained(args.model)
    trainer = Trainer(model=model, args=training_args(args, args.work), train_dataset=train)
    trainer.train()
    start_logits, end_logits = trainer.predict(test.remove_columns(["example_id", "offset_mapping"])).predictions[:2]
    by_example = collections.defaultdict(list)
    for i, example_id in enumerate(test["example_id"]):
        by_example[example_id].append(i)
    em = f1 = 0.0
    for example in raw["test"]:
        best, best_score = "", -1e9
        for i in by_example[example["id"]]:
            offsets = test[i]["offset_mapping"]
            for s in np.argsort(start_logits[i])[-20:][::-1]:
                for e in np.argsort(end_logits[i])[-20:][::-1]:
                    if offsets[s] is None or offsets[e] is None or e < s or e - s + 1 > 30:
                        continue
                    score = start_logits[i][s] + end_logits[i][e]
                    if score > best_score:
                        best, best_score = example["context"][offsets[s][0]:offsets[e][1]], score
        golds = example["answers"]["text"]
        em += max(float(_normalize(best) == _normalize(g)) for g in golds)
        f1 += max(_f1(best, g) for g in golds)
    n = len(raw["test"])
    return {"exact_match": 100 * em / n, "f1": 100 * f1 / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=["classification", "ner", "qa"])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--work", default="/tmp/standard-recipe")
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--stride", type=int, default=64, help="QA: tokens shared by neighbouring windows")
    parser.add_argument("--epochs", type=float, default=1)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    from transformers import set_seed

    set_seed(args.seed)
    result = {"classification": classification, "ner": ner, "qa": qa}[args.task](args)
    result["seconds"] = round(time.perf_counter() - STARTED, 1)
    Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
