"""``bertkit finetune RECIPE --seeds N``: the same recipe with seeds ``seed .. seed+N-1``, to see how much
of a score is the seed.

Each run is a whole ``train.run`` into its own directory beside the output (``OUTPUT_DIR.seed-S``). The
run with the best validation metric (the task's best-model metric) becomes ``OUTPUT_DIR``; the others
are deleted. Its ``metrics.json`` gains ``seeds``: the seeds, the chosen one, and for every numeric
metric of validation and test its ``mean``, ``std`` (sample standard deviation) and per-seed ``values``.
Without a validation split the first seed's model is kept (choosing by the test score would make the
reported test score optimistic).

What this does not do: run seeds in parallel, or on several processes (``--num-processes`` is refused
with ``--seeds``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError
from bertkit.recipe import Recipe


def run(recipe: Recipe, n: int, *, overwrite: bool, command: str) -> dict[str, Any]:
    """Train ``n`` seeds; publish the best at ``recipe.output_dir``; return its metrics with ``seeds``."""
    from bertkit import console, outputs, tasks, train

    if n < 1:
        raise BertkitError(f"--seeds {n}: give at least 1", "e.g. --seeds 3")
    target = Path(recipe.output_dir)
    outputs.check_writable(target, overwrite=overwrite)  # refuse an existing output before any training
    metric, greater = tasks.get(recipe.task).best_metric(recipe)
    seeds = list(range(recipe.seed, recipe.seed + n))
    runs: list[tuple[int, Path, dict[str, Any]]] = []
    try:
        for seed in seeds:
            folder = target.with_name(f"{target.name}.seed-{seed}")
            console.log(f"seed {seed} ({len(runs) + 1} of {n}) -> {folder}")
            metrics = train.run(dataclasses.replace(recipe, seed=seed, output_dir=str(folder)), overwrite=True,
                                command=command)
            runs.append((seed, folder, metrics))
    except BaseException:
        for _, folder, _ in runs:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    scored = [r for r in runs if metric in r[2].get("validation", {})]
    if scored:
        chosen = (max if greater else min)(scored, key=lambda r: r[2]["validation"][metric])
    else:
        chosen = runs[0]
    summary = {"seeds": seeds, "kept": chosen[0],
               "kept_by": f"validation {metric}" if scored else "first seed (no validation split)"}
    for split in ("validation", "test"):
        keys = [k for k, v in runs[0][2].get(split, {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
        for key in keys:
            values = [r[2][split][key] for r in runs if isinstance(r[2].get(split, {}).get(key), (int, float))]
            if len(values) == len(runs):
                summary[f"{split}.{key}"] = {"mean": statistics.mean(values),
                                             "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
    for seed, folder, _ in runs:
        if seed != chosen[0]:
            shutil.rmtree(folder, ignore_errors=True)
    outputs.publish(chosen[1], target)
    metrics = {**chosen[2], "seeds": summary}
    path = target / "metrics.json"
    saved = json.loads(path.read_text(encoding="utf-8"))
    saved["seeds"] = summary
    path.write_text(json.dumps(saved, indent=2, ensure_ascii=False), encoding="utf-8")
    return metrics


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """``validation f1: 0.8123 +- 0.0101 (0.80, 0.82, 0.82)`` for the main metrics of each split."""
    lines = [f"seeds {', '.join(map(str, summary['seeds']))}: kept seed {summary['kept']} (best {summary['kept_by']})"]
    for key, stats in summary.items():
        if isinstance(stats, dict) and key.split(".", 1)[1] in ("accuracy", "f1", "f1_macro", "exact_match", "perplexity",
                                                                  "pearson", "spearman", "mse"):
            values = ", ".join(f"{v:.4f}" for v in stats["values"])
            lines.append(f"{key}: {stats['mean']:.4f} +- {stats['std']:.4f} ({values})")
    return lines
