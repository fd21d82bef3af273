"""Study: which NER labelling and decoding reads multi-type entities best (issue 33).

    python bench/ner_decoding_study.py [--ner-data bc5cdr|ncbi_disease] [--seeds 3] [--json FILE]

On the rows ``bench/parity.py`` draws (same files, same settings: MiniLM, max_length 128, 2 epochs, lr 5e-5,
batch 16), for each seed it trains two models with ``bertkit finetune`` — labels on each word's first
sub-token only (``ner.label_all_tokens=false``, the standard script's way) and on every sub-token (B- turned
into I-, the default) — then reads each model's test-set probabilities once and decodes them every way:
word scores from the ``first`` sub-token, the ``average`` or the ``max`` of them, times tags by each word's
``argmax`` or by the best well-formed sequence (``viterbi``). Entity F1 (seqeval default mode, as bertkit
reports it) per combination; mean +- std over seeds. Errors of the first-token/argmax reading are counted
by kind: predicted entities that are a fragment of a longer gold entity of the same type, spurious ones,
gold entities missed entirely, and words tagged I- where no entity is open.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import parity  # noqa: E402

BERTKIT = str(Path(sys.executable).parent / "bertkit")
HOWS = ("first", "average", "max")
DECODERS = ("argmax", "viterbi")


def train(files: dict[str, Path], seed: int, all_tokens: bool, out: Path) -> None:
    s = parity.settings("ner", None)
    command = [BERTKIT, "finetune", str(common.REPO / "recipes" / "ncbi-disease-ner.yaml"), "model=minilm-l6",
               "data.dataset=null", f"data.train={files['train']}", "data.validation=null", f"data.test={files['test']}",
               f"output_dir={out}", f"seed={seed}", f"max_length={s['max_length']}",
               f"training.num_train_epochs={s['epochs']}", f"training.learning_rate={s['lr']}",
               f"training.per_device_train_batch_size={s['batch_size']}", f"ner.label_all_tokens={str(all_tokens).lower()}",
               "--overwrite", "--quiet"]
    subprocess.run(command, check=True, capture_output=True)


def decode_all(model_dir: Path, test: Path) -> tuple[dict[str, float], dict[str, int]]:
    """F1 of every (aggregation, decoder) on the model's test probabilities; error kinds of first/argmax."""
    from bertkit import data as data_mod
    from bertkit import evaluation, hardware, models, tasks
    from bertkit.metrics import entities as ents
    from bertkit.tasks.ner import decoding

    recipe = evaluation.saved_recipe(str(model_dir), [], evaluation._data_source(str(test), None))
    task = tasks.get("ner")
    raw, _ = task.clean_split(data_mod.load(recipe.data, "ner")["test"], recipe, "test")
    tokenizer = models.load_tokenizer(str(model_dir))
    model = evaluation._load_model(str(model_dir), task, recipe)
    spec = task.spec_from_model(model.config, recipe)
    feats, _ = task.features(raw, tokenizer, recipe, spec, "test")
    scored = task.infer(model, feats, tokenizer, hardware.resolve_precision(recipe.precision), 64)
    gold = [s.meta["tags"] for s in scored]
    f1, errors = {}, collections.Counter()
    for how in HOWS:
        for decoder in DECODERS:
            predicted = [decoding.word_tags(decoding._softmax(s.scores), s.meta["word_ids"], s.meta["n_words"],
                                            spec.labels, how, spec.scheme, decoder)[0] for s in scored]
            f1[f"{how}/{decoder}"] = ents.entity_scores(gold, predicted, spec.scheme)["f1"]
            if (how, decoder) == ("first", "argmax"):
                errors = error_kinds(gold, predicted)
    return f1, dict(errors)


def error_kinds(gold: list[list[str]], predicted: list[list[str]]) -> collections.Counter:
    from bertkit.metrics import entities as ents

    counts: collections.Counter = collections.Counter()
    for g, p in zip(gold, predicted):
        true, pred = set(ents.get_entities(g)), set(ents.get_entities(p))
        previous = "O"
        for tag in p:
            counts["I- with no entity open"] += tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:])
            previous = tag
        for kind, s, e in pred - true:
            inside = [t for t in true if t[1] <= s and e <= t[2] and (t[1], t[2]) != (s, e)]
            if inside:
                counts["fragment of a gold entity" + (" (same type)" if inside[0][0] == kind else " (other type)")] += 1
            elif any(t[1] < e and s < t[2] for t in true):
                counts["wrong boundaries"] += 1
            else:
                counts["spurious"] += 1
        counts["gold missed entirely"] += sum(not any(q[1] < t[2] and t[1] < q[2] for q in pred) for t in true - pred)
    return counts


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ner-data", choices=["ncbi_disease", "bc5cdr"], default="bc5cdr")
    parser.add_argument("--data", default=str(common.DEFAULT_DATA))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=42)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    draw_args = parity.arguments().parse_args(["--ner-data", args.ner_data])
    results: dict[str, list] = collections.defaultdict(list)
    errors = {}
    with tempfile.TemporaryDirectory() as tmp:
        files = parity.draw("ner", draw_args, Path(args.data), Path(tmp) / "data")
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for all_tokens in (False, True):
                out = Path(tmp) / f"m-{all_tokens}-{seed}"
                train(files, seed, all_tokens, out)
                f1, kinds = decode_all(out, files["test"])
                label = "every sub-token" if all_tokens else "first sub-token"
                for key, value in f1.items():
                    results[f"{label}|{key}"].append(value)
                errors[f"{label}, seed {seed}"] = kinds
                print(f"seed {seed}, {label}: " + ", ".join(f"{k} {v:.4f}" for k, v in f1.items()), file=sys.stderr,
                      flush=True)
    print(f"\n{args.ner_data} ({draw_args.ner_train} / {draw_args.ner_test} sentences), entity F1 over seeds "
          f"{args.first_seed}..{args.first_seed + args.seeds - 1}:")
    print(f"  {'labels on':17s} {'word scores':12s} {'argmax':>18s} {'viterbi':>18s}")
    for label in ("first sub-token", "every sub-token"):
        for how in HOWS:
            cells = []
            for decoder in DECODERS:
                v = results[f"{label}|{how}/{decoder}"]
                cells.append(f"{statistics.mean(v):.4f} +- {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}")
            print(f"  {label:17s} {how:12s} {cells[0]:>18s} {cells[1]:>18s}")
    print("  errors of first sub-token / first / argmax (the standard script's reading):")
    for name, kinds in errors.items():
        if name.startswith("first"):
            print(f"    {name}: {kinds}")
    report = {"results": dict(results), "errors": errors, "settings": vars(args)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
