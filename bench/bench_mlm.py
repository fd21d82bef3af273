"""Domain adaptation side by side: ``bertkit adapt-domain`` against the ``run_mlm`` way, as whole commands.

    python bench/bench_mlm.py [--data FILE] [--model minilm-l6] [--max-steps 150] [--batch-size 32] [--lr 1e-4]
                              [--seed 42] [--max-length 128] [--validation-share 0.05] [--precision auto]
                              [--sides bertkit,standard[,bertkit-full-head]] [--set key=value ...] [--json FILE]
                              [--keep DIR]

The corpus (default ``../shared/data/ncbi_disease/abstract_sentences_train_devel.txt``, one sentence a
line) is split once, seeded, into training lines and held-out lines (``--validation-share``), written as
two files that both sides read. Then, each in its own process and timed from start to exit:

- ``bertkit``: ``bertkit adapt-domain recipes/biomedical-en-mlm.yaml`` (the shipped recipe: its masking,
  warm-up, weight decay, per-epoch evaluation, best-checkpoint keeping, perplexity before and after),
  given the two files, the model, ``--max-steps`` optimizer steps, the batch size, learning rate, seed and
  max_length (``--set`` adds overrides);
- ``standard``: ``bench/standard_mlm.py`` (the ``run_mlm`` example's way: concatenated blocks,
  ``DataCollatorForLanguageModeling`` with bertkit's masking settings, whole words included, the stock
  ``Trainer``, one evaluation at the end), with the same steps, batch size, learning rate, seed,
  max_length, and the precision bertkit resolved (read from its ``training_args.json``), so the
  comparison isolates the method, not the number format;
- ``bertkit-full-head`` (only when named in ``--sides``): the same bertkit command with the task's
  ``training_loss`` switched off, so the model's full forward (every position through the vocabulary
  projection) computes the loss: what the masked-positions-only head itself is worth.

Afterwards one scorer here, not either side's own code, loads each trained model and measures held-out
perplexity in fp32 with the model's own forward on the SAME masked examples, two sets of them: the
held-out lines cut into blocks and masked once (seeded) the ``run_mlm`` way, and bertkit's held-out
blocks masked once with the recipe's seed. Printed: both perplexities of each model, each side's own
reported perplexity, seconds (whole command, and training alone), and the speed ratio standard / bertkit.
The machine is shared: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

HERE = Path(__file__).resolve().parent
RECIPE = common.REPO / "recipes" / "biomedical-en-mlm.yaml"
DEFAULT_CORPUS = common.DEFAULT_DATA / "ncbi_disease" / "abstract_sentences_train_devel.txt"


def split_corpus(path: Path, share: float, seed: int, out: Path) -> dict[str, Path]:
    """Seeded hold-out of whole lines (bertkit's documents for a file without blank lines)."""
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    held = set(random.Random(seed).sample(range(len(lines)), round(share * len(lines))))
    out.mkdir(parents=True, exist_ok=True)
    files = {"train": out / "train.txt", "validation": out / "valid.txt"}
    files["train"].write_text("".join(f"{x}\n" for i, x in enumerate(lines) if i not in held), encoding="utf-8")
    files["validation"].write_text("".join(f"{x}\n" for i, x in enumerate(lines) if i in held), encoding="utf-8")
    return files


def bertkit_overrides(args, files: dict[str, Path], model: str, output: Path, cache: Path) -> list[str]:
    out = [f"model={model}", f"data.train={files['train']}", f"data.validation={files['validation']}",
           f"output_dir={output}", f"seed={args.seed}", f"max_length={args.max_length}",
           f"training.max_steps={args.max_steps}", f"training.per_device_train_batch_size={args.batch_size}",
           f"training.learning_rate={args.lr}", f"mlm.cache_dir={cache}",
           "mlm.probe=null"]  # the method's speed, not the shipped recipe's downstream probe
    if args.precision != "auto":
        out.append(f"precision={args.precision}")
    return out + args.set


def timed(command: list[str], log: Path) -> float:
    print(f"[{time.strftime('%H:%M:%S')}] {' '.join(command)}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"failed (exit {proc.returncode}): {' '.join(command)}\n{log.read_text()[-3000:]}")
    return seconds


# `bertkit` with the mlm task's training_loss off: the Task table is rebuilt from the module after the
# attribute is cleared, then the command line runs as usual.
FULL_HEAD = ("import sys; from bertkit import tasks; import bertkit.tasks.mlm as m; m.training_loss = None; "
             "tasks.get.cache_clear(); assert tasks.get('mlm').training_loss is None; from bertkit.cli import main; "
             "sys.argv = ['bertkit', *sys.argv[1:]]; main()")


def run_bertkit(overrides: list[str], out: Path, log: Path, full_head: bool = False) -> dict:
    command = [sys.executable, "-c", FULL_HEAD] if full_head else [str(Path(sys.executable).parent / "bertkit")]
    seconds = timed([*command, "adapt-domain", str(RECIPE), *overrides, "--overwrite"], log)
    metrics = json.loads((out / "metrics.json").read_text())
    settings = json.loads((out / "training_args.json").read_text())
    precision = "bf16" if settings.get("bf16") else "fp16" if settings.get("fp16") else "fp32"
    return {"seconds": seconds, "model_dir": str(out), "precision": precision,
            "own_perplexity": metrics["validation"]["perplexity"], "own_accuracy": metrics["validation"]["accuracy"],
            "train_seconds": metrics["train"]["seconds"], "steps": settings.get("max_steps"),
            "before_perplexity": metrics.get("before", {}).get("validation", {}).get("perplexity")}


def run_standard(args, files: dict[str, Path], model: str, masking: dict, precision: str, work: Path) -> dict:
    out = work / "standard.json"
    command = [sys.executable, str(HERE / "standard_mlm.py"), "--train", str(files["train"]),
               "--validation", str(files["validation"]), "--model", model, "--out", str(out),
               "--work", str(work / "standard-run"), "--max-length", str(args.max_length),
               "--max-steps", str(args.max_steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
               "--seed", str(args.seed), "--precision", precision,
               "--mlm-probability", str(masking["mlm_probability"]), "--mask-replace", str(masking["mask_replace"]),
               "--random-replace", str(masking["random_replace"])]
    if masking["whole_word_mask"]:
        command.append("--whole-word-mask")
    seconds = timed(command, work / "standard.log")
    result = json.loads(out.read_text())
    return {"seconds": seconds, "model_dir": result["model_dir"], "precision": precision,
            "own_perplexity": result["perplexity"], "own_accuracy": result["accuracy"],
            "train_seconds": result["train_seconds"], "steps": args.max_steps}


# ---------------------------------------------------------------------------------------------
# The one scorer both trained models go through


def masked_sets(args, files: dict[str, Path], model: str, recipe) -> dict[str, list[tuple[list[int], list[int]]]]:
    """Held-out (input_ids, labels) examples, masked once: 'run_mlm way' (the validation lines cut into
    blocks as standard_mlm.py cuts them, masked by transformers' collator with a fixed seed) and 'bertkit
    way' (bertkit's own validation blocks, masked with the recipe's seed)."""
    import standard_mlm
    from transformers import AutoTokenizer

    from bertkit import train

    tokenizer = AutoTokenizer.from_pretrained(model)
    options = argparse.Namespace(mlm_probability=recipe.options.mlm_probability, mask_replace=recipe.options.mask_replace,
                                 random_replace=recipe.options.random_replace,
                                 whole_word_mask=recipe.options.whole_word_mask)
    blocks = standard_mlm.tokenized_blocks({"validation": str(files["validation"])}, tokenizer, args.max_length,
                                           options.whole_word_mask)["validation"]
    collate = standard_mlm.collator(tokenizer, options, seed=args.seed)
    hf = []
    for start in range(0, len(blocks), 32):
        batch = collate([blocks[i] for i in range(start, min(start + 32, len(blocks)))])
        hf += [(ids.tolist(), labels.tolist()) for ids, labels in zip(batch["input_ids"], batch["labels"])]
    prepared = train.prepare(recipe)
    ours = [(row["input_ids"], row["labels"]) for row in prepared.features["validation"]]
    return {"run_mlm way": hf, "bertkit way": ours}


def score(model_dir: str, rows: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 32) -> dict:
    """Held-out loss and perplexity: the model's own forward in fp32, cross-entropy summed over every
    masked token of every example, divided by their count."""
    import torch
    from transformers import AutoModelForMaskedLM

    model = AutoModelForMaskedLM.from_pretrained(model_dir).eval()
    total, count, correct = 0.0, 0, 0
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            part = rows[start:start + batch_size]
            width = max(len(ids) for ids, _ in part)
            ids = torch.full((len(part), width), pad_id)
            labels = torch.full((len(part), width), -100)
            attention = torch.zeros((len(part), width), dtype=torch.long)
            for i, (x, y) in enumerate(part):
                ids[i, :len(x)], labels[i, :len(y)], attention[i, :len(x)] = torch.tensor(x), torch.tensor(y), 1
            logits = model(input_ids=ids, attention_mask=attention).logits
            where = labels != -100
            total += float(torch.nn.functional.cross_entropy(logits[where].float(), labels[where], reduction="sum"))
            count += int(where.sum())
            correct += int((logits[where].argmax(-1) == labels[where]).sum())
    loss = total / count
    return {"loss": loss, "perplexity": math.exp(min(loss, 700.0)), "accuracy": correct / count, "masked_tokens": count}


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_CORPUS), help="a plain-text corpus, one document a line")
    parser.add_argument("--model", default="minilm-l6", help="an alias or local model directory both sides start from")
    parser.add_argument("--max-steps", type=int, default=150)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--validation-share", type=float, default=0.05)
    parser.add_argument("--precision", default="auto", help="bertkit's precision (auto: its own choice); the "
                        "standard side runs in whatever bertkit resolved")
    parser.add_argument("--sides", default="bertkit,standard")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="an extra bertkit override")
    parser.add_argument("--json", help="write every result here")
    parser.add_argument("--keep", help="work in this folder (kept) instead of a temporary one")
    return parser


def main(argv: list[str] | None = None) -> dict:
    args = arguments().parse_args(argv)
    from bertkit import hardware, models
    from bertkit import recipe as recipe_mod

    model = models.resolve(args.model)[0]
    sides = args.sides.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        files = split_corpus(Path(args.data), args.validation_share, args.seed, work / "data")
        overrides = bertkit_overrides(args, files, model, work / "bertkit-run", work / "cache")
        recipe = recipe_mod.load(str(RECIPE), overrides)
        masking = {k: getattr(recipe.options, k) for k in ("mlm_probability", "mask_replace", "random_replace",
                                                            "whole_word_mask")}
        results: dict[str, dict] = {}
        if "bertkit" in sides:
            results["bertkit"] = run_bertkit(overrides, work / "bertkit-run", work / "bertkit.log")
        precision = results["bertkit"]["precision"] if "bertkit" in results else \
            hardware.resolve_precision(recipe.precision)
        if "standard" in sides:
            results["standard"] = run_standard(args, files, model, masking, precision, work)
        if "bertkit-full-head" in sides:
            results["bertkit-full-head"] = run_bertkit(
                [*bertkit_overrides(args, files, model, work / "bertkit-full-head-run", work / "cache"),
                 f"precision={precision}"],
                work / "bertkit-full-head-run", work / "bertkit-full-head.log", full_head=True)
        print(f"[{time.strftime('%H:%M:%S')}] scoring both models on the same held-out masked examples",
              file=sys.stderr, flush=True)
        sets = masked_sets(args, files, model, recipe)
        from transformers import AutoTokenizer

        pad_id = AutoTokenizer.from_pretrained(model).pad_token_id or 0
        for side, r in results.items():
            r["scored"] = {name: score(r["model_dir"], rows, pad_id) for name, rows in sets.items()}
        report = {"benchmark": "mlm", "machine": common.machine(), "settings": vars(args), "masking": masking,
                  "precision": precision, "lines": {k: sum(1 for _ in v.open()) for k, v in files.items()},
                  "results": results}
        print_report(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


def print_report(report: dict) -> None:
    s, results = report["settings"], report["results"]
    print(f"\nadapt-domain vs the run_mlm way: {s['model']} on {Path(s['data']).name} "
          f"({report['lines']['train']} training / {report['lines']['validation']} held-out lines), "
          f"{s['max_steps']} steps x batch {s['batch_size']} x {s['max_length']} tokens, lr {s['lr']}, seed {s['seed']}, "
          f"precision {report['precision']}; machine {report['machine'].get('cpu') or report['machine'].get('cuda')}")
    sides = [side for side in ("bertkit", "standard", "bertkit-full-head") if side in results]
    print(f"  {'':52s}" + "".join(f"{side:>18s}" for side in sides))
    first = results[sides[0]]["scored"]
    for name in first:
        n = first[name]["masked_tokens"]
        print(f"  {f'held-out perplexity, {name} masks ({n} tokens)':52s}"
              + "".join(f"{results[side]['scored'][name]['perplexity']:18.3f}" for side in sides))
    print(f"  {'held-out accuracy, run_mlm way masks':52s}"
          + "".join(f"{results[side]['scored']['run_mlm way']['accuracy']:18.4f}" for side in sides))
    print(f"  {'perplexity each side reports (its own masks)':52s}"
          + "".join(f"{results[side]['own_perplexity']:18.3f}" for side in sides))
    print(f"  {'seconds, whole command':52s}" + "".join(f"{results[side]['seconds']:18.1f}" for side in sides))
    print(f"  {'seconds, training alone':52s}" + "".join(f"{results[side]['train_seconds']:18.1f}" for side in sides))
    a = results.get("bertkit")
    for other in ("standard", "bertkit-full-head"):
        if a and other in results:
            b = results[other]
            print(f"  speed {other} / bertkit: whole command {b['seconds'] / a['seconds']:.2f}x, "
                  f"training alone {b['train_seconds'] / a['train_seconds']:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
