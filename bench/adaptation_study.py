"""Which domain adaptation pays off downstream: every variant judged by `bertkit adapt-domain`'s own probe.

Each variant is one `bertkit adapt-domain` command over the same starting model (MiniLM-L6) whose probe
fine-tunes the NCBI-disease NER recipe (`recipes/ncbi-disease-ner.yaml`: training split only, devel as
validation, test scored) on the starting and the adapted model over the same seeds. The starting
model's probe scores are computed once and reused from the probe cache by the later variants.

Variants (`--variants`, comma separated):
  tapt          the probe's own training sentences (task-adaptive pretraining, `data.train: task`)
  tapt-nowarm   the same with `mlm.head_warmup_steps: 0` (the fresh head trains with the encoder at once)
  dapt          BC5CDR training and development sentences (other PubMed abstracts: chemicals and diseases)
  dapt+tapt     both in one corpus (`mlm.task_text: true`)
  tapt-tokens   TAPT with `mlm.add_domain_tokens: 500`
A variant may name its own number of epochs: `tapt@10`.

    python bench/adaptation_study.py --variants tapt,dapt --epochs 3 [--data ../shared/data] [--out bench/out/adapt]

Prints one row per variant: corpus size, held-out perplexity before -> after, adaptation seconds, probe
test F1 of the start and of the adapted model (mean +- std over the seeds) and the difference.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BERTKIT = [sys.executable, "-m", "bertkit"]


def conll_sentences(path: Path) -> list[str]:
    sentences, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append(" ".join(words))
            words = []
        else:
            words.append(line.split("\t")[0])
    if words:
        sentences.append(" ".join(words))
    return sentences


def recipe(out: Path, name: str, train: str, epochs: float, seeds: int, max_train: int | None, **mlm: object) -> Path:
    import yaml

    probe = {"recipe": str(ROOT / "recipes" / "ncbi-disease-ner.yaml"), "seeds": seeds}
    if max_train:
        probe["max_train_samples"] = max_train
    tree = {"task": "mlm", "model": "minilm-l6", "output_dir": str(out / name), "seed": 42, "max_length": 128,
            "data": {"train": train, "validation_size": 0.05},
            "mlm": {"whole_word_mask": True, "probe": probe, **mlm},
            "training": {"num_train_epochs": epochs, "learning_rate": 1.0e-4, "per_device_train_batch_size": 32,
                         "warmup_steps": 0.06}}
    path = out / f"{name}.yaml"
    path.write_text(f"# bertkit adapt-domain {path}\n" + yaml.safe_dump(tree, sort_keys=False), encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "adapt"))
    parser.add_argument("--variants", default="tapt,dapt,dapt+tapt,tapt-nowarm,tapt-tokens")
    parser.add_argument("--epochs", type=float, default=3)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--max-train", type=int, default=None, help="probe.max_train_samples (default: all)")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    domain = out / "bc5cdr_sentences.txt"
    domain.write_text("\n".join(conll_sentences(data / "bc5cdr" / "train.tsv")
                                + conll_sentences(data / "bc5cdr" / "devel.tsv")) + "\n", encoding="utf-8")
    variants = {
        "tapt": ("task", {}),
        "tapt-nowarm": ("task", {"head_warmup_steps": 0}),
        "dapt": (str(domain), {}),
        "dapt+tapt": (str(domain), {"task_text": True}),
        "tapt-tokens": ("task", {"add_domain_tokens": 500}),
    }
    rows = []
    for spec in args.variants.split(","):
        kind, _, epochs = spec.partition("@")  # tapt@10: that variant for 10 epochs
        train, mlm = variants[kind]
        name = f"{kind}-{epochs}ep" if epochs else kind
        path = recipe(out, name, train, float(epochs or args.epochs), args.seeds, args.max_train, **mlm)
        started = time.perf_counter()
        done = subprocess.run([*BERTKIT, "adapt-domain", str(path), "--overwrite", "--quiet"], capture_output=True,
                              text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            print(f"{name}: failed\n{done.stdout}\n{done.stderr}", flush=True)
            continue
        metrics = json.loads((out / name / "metrics.json").read_text(encoding="utf-8"))
        probe = metrics["probe"]
        row = {"variant": name, "documents": sum(metrics["data"]["splits"].values()),
               "perplexity_before": metrics["before"]["validation"]["perplexity"],
               "perplexity_after": metrics["validation"]["perplexity"], "adapt_seconds": metrics["train"]["seconds"],
               "command_seconds": round(seconds, 1), "start": probe["start"], "adapted": probe["adapted"],
               "difference": probe["difference"], "beats_start": probe["beats_start"]}
        rows.append(row)
        (out / "study.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
        print(f"{name:<12} docs {row['documents']:>6}  ppl {row['perplexity_before']:>9.1f} -> {row['perplexity_after']:>7.2f}"
              f"  adapt {row['adapt_seconds']:>6.0f} s  test f1 start {probe['start']['mean']:.4f} +- {probe['start']['std']:.4f}"
              f"  adapted {probe['adapted']['mean']:.4f} +- {probe['adapted']['std']:.4f}  diff {probe['difference']:+.4f}"
              f"  {'BEATS' if probe['beats_start'] else 'no clear gain'}", flush=True)


if __name__ == "__main__":
    main()
