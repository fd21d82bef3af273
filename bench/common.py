"""What every side-by-side benchmark shares: the IMDb subset, child processes, peak memory, tables.

Each side of a benchmark runs in its own child process (``python bench/X.py --side NAME``), back to
back, so neither inherits the other's caches, threads or allocator state, and each reports its own
peak RSS. The parent prints one table with both sides and the ratio bertkit / baseline.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# Every real Japanese text in ../shared/data: sentiment, NER (train + valid), JSQuAD, medical reports.
JAPANESE_SOURCES = [
    "ja_sentiment/train.jsonl",
    "ja_ner/train.jsonl",
    "ja_ner/valid.jsonl",
    "jsquad/train.json",
    "ja_medical/case_reports.txt",
]


def japanese_files(data_dir: str | Path) -> list[str]:
    """The Japanese source files present under ``data_dir`` (exits when there are none)."""
    paths = [str(Path(data_dir) / s) for s in JAPANESE_SOURCES if (Path(data_dir) / s).exists()]
    if not paths:
        sys.exit(f"no Japanese data under {data_dir}")
    return paths


def imdb_subset(data_dir: Path, n_train: int, n_eval: int, seed: int, out: Path) -> dict[str, Path]:
    """A fixed, seeded, label-balanced draw from imdb/train.jsonl, written as train/eval JSONL files."""
    source = Path(data_dir) / "imdb" / "train.jsonl"
    if not source.exists():
        sys.exit(f"{source} not found: pass --data pointing at the folder that holds imdb/train.jsonl")
    rows = [json.loads(line) for line in source.open(encoding="utf-8") if line.strip()]
    random.Random(seed).shuffle(rows)
    if n_train + n_eval > len(rows):
        sys.exit(f"asked for {n_train} + {n_eval} reviews, {source} has {len(rows)}")
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, part in (("train", rows[:n_train]), ("eval", rows[n_train:n_train + n_eval])):
        paths[name] = out / f"{name}.jsonl"
        with paths[name].open("w", encoding="utf-8") as f:
            for row in part:
                f.write(json.dumps({"text": row["text"], "label": row["label"]}) + "\n")
    return paths


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def add_common_args(parser: Any) -> None:
    """--json for users; --side/--result are how the parent tells a child which side to run."""
    import argparse

    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_side(script: Path, side: str, args: list[str], result: Path) -> dict[str, Any]:
    """Run one side in a fresh interpreter; return what it wrote to ``result``."""
    command = [sys.executable, str(script), "--side", side, "--result", str(result), *args]
    print(f"[{time.strftime('%H:%M:%S')}] running {side}: {' '.join(command[1:])}", file=sys.stderr, flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command)
    if proc.returncode != 0:
        sys.exit(f"the {side} side failed (exit {proc.returncode})")
    found = json.loads(result.read_text())
    found.setdefault("wall_seconds", round(time.perf_counter() - started, 1))
    return found


def write_result(path: str, result: dict[str, Any]) -> None:
    result["peak_rss_mib"] = peak_rss_mib()
    Path(path).write_text(json.dumps(result, indent=2))


def table(title: str, rows: list[tuple[str, str]], bertkit: dict[str, Any], baseline: dict[str, Any],
          higher_is_better: dict[str, bool]) -> str:
    """Rows of (key, label): bertkit, baseline and the ratio bertkit / baseline."""
    lines = [title, f"  {'':34s} {'bertkit':>12s} {'baseline':>12s} {'ratio':>8s}"]
    for key, label in rows:
        a, b = bertkit.get(key), baseline.get(key)
        ratio = f"{a / b:7.2f}x" if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else ""
        fmt = lambda v: f"{v:12.4g}" if isinstance(v, (int, float)) else f"{str(v):>12s}"  # noqa: E731
        lines.append(f"  {label:34s} {fmt(a)} {fmt(b)} {ratio:>8s}")
    return "\n".join(lines)


def matmul_peak(dtype_name: str, n: int = 2048, reps: int = 8) -> float:
    """FLOP/s of a large square matmul in this process and dtype (the practical ceiling)."""
    import torch

    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(2):
        a @ b
    started = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - started)


def model_flops(model: Any, lengths: list[int], passes: int) -> float:
    """FLOPs of running ``model`` over sequences of these (real, unpadded) lengths.

    Per pass: 2 x non-embedding parameters x tokens for the weights, plus attention's two
    seq x seq matmuls (4 x layers x hidden x length^2 per sequence). Inference is 1 pass,
    training 3 (forward, and a backward that costs two).
    """
    cfg = model.config
    n = sum(p.numel() for name, p in model.named_parameters() if "embeddings" not in name)
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * sum(x * x for x in lengths)
    return passes * (2 * n * sum(lengths) + attention)


def machine() -> dict[str, Any]:
    import platform

    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "cpu_count": os.cpu_count(),
            "threads": torch.get_num_threads(), "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import transformers

    info["transformers"] = transformers.__version__
    return info
