"""``bertkit adapt-domain`` judged by the task it is for: the downstream probe.

Held-out perplexity says the adapted model predicts the domain's words better; it does not say the
task that follows gains (perplexity can fall a lot while the downstream score stays flat). With
``mlm.probe`` set, after the adaptation has been trained and published this module fine-tunes the
*starting* model and the *adapted* one with the probe recipe, identical settings, over
``probe.seeds`` seeds, and reports for each the task's metric (test split, else validation) as
mean +- std, and the difference. The adapted model "beats" the start only when the difference is
larger than both models' seed standard deviations; anything less is said plainly.

The starting model's scores depend only on the probe recipe, the seeds and that model, so they are
kept in the user's cache directory (``hardware.cache_dir() / probe``) and reused by a later
adaptation with the same probe (``probe.reuse_start: false`` recomputes them). Each probe fine-tune
runs in a scratch directory beside the output and is deleted; its scores go to ``metrics.json``
(``probe``), ``probe.json`` and the model card.

What this does not do: choose the probe's settings (tune them with ``bertkit tune`` first), or run
the probe's fine-tunes in parallel.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import statistics
from pathlib import Path
from typing import Any

from bertkit import console, hardware, models, outputs, tasks
from bertkit.recipe import Recipe
from bertkit.tasks import task_text

PROBE_CACHE_VERSION = 1


def check(recipe: Recipe) -> Recipe | None:
    """Before any training: the probe recipe loads and can score (one-line errors otherwise)."""
    if task_text.probe_settings(recipe) is None:
        return None
    return task_text.probe_recipe(recipe)


def _score(metrics: dict[str, Any], metric: str) -> tuple[str, float]:
    split = "test" if "test" in metrics else "validation"
    return split, float(metrics[split][metric])


def _cache_path(probe: Recipe, seeds: list[int]) -> Path:
    import torch
    import transformers

    key = json.dumps([PROBE_CACHE_VERSION, probe.to_dict(), seeds, models.fingerprint(probe.model), torch.__version__,
                      transformers.__version__, hardware.resolve_precision(probe.precision)], sort_keys=True, default=str)
    return hardware.cache_dir() / "probe" / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"


def _fine_tunes(probe: Recipe, seeds: list[int], scratch: Path, label: str, command: str) -> list[dict[str, Any]]:
    from bertkit import train

    metric, _ = tasks.get(probe.task).best_metric(probe)
    runs = []
    level = console.level()
    for n, seed in enumerate(seeds, 1):
        folder = scratch / f"{label}-seed-{seed}"
        console.log(f"probe: fine-tuning the {label} model, seed {seed} ({n} of {len(seeds)})")
        console.set_level("quiet")
        try:
            metrics = train.run(dataclasses.replace(probe, seed=seed, output_dir=str(folder)), overwrite=True,
                                command=command)
        finally:
            console.set_level(level)
            shutil.rmtree(folder, ignore_errors=True)
        split, value = _score(metrics, metric)
        console.log(f"probe: {label} seed {seed}: {split} {metric} {value:.4f} ({metrics['train']['seconds']} s training)")
        runs.append({"seed": seed, "split": split, "metric": metric, "value": value,
                     "train_seconds": metrics["train"]["seconds"]})
    return runs


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    values = [r["value"] for r in runs]
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values, "runs": runs}


def run_probe(recipe: Recipe, command: str = "") -> dict[str, Any]:
    """Fine-tune the starting and the adapted model with the probe; write the comparison into the
    output directory (metrics.json, probe.json, README.md) and return it."""
    settings = task_text.probe_settings(recipe)
    assert settings is not None
    out = Path(recipe.output_dir)
    probe_task = task_text.probe_recipe(recipe)
    seeds = list(range(probe_task.seed, probe_task.seed + settings.seeds))
    scratch = out.with_name(out.name + ".probe")
    shutil.rmtree(scratch, ignore_errors=True)
    results: dict[str, Any] = {}
    try:
        for label, model in (("start", recipe.model), ("adapted", str(out))):
            probe = task_text.probe_recipe(recipe, model=model)
            cache = _cache_path(probe, seeds) if label == "start" else None
            runs = None
            if cache is not None and settings.reuse_start and cache.is_file():
                runs = json.loads(cache.read_text(encoding="utf-8"))["runs"]
                console.log(f"probe: the start model's scores with these settings are cached ({cache}); "
                            "mlm.probe.reuse_start=false measures them again")
            if runs is None:
                runs = _fine_tunes(probe, seeds, scratch, label, command)
                if cache is not None:
                    try:
                        cache.parent.mkdir(parents=True, exist_ok=True)
                        cache.write_text(json.dumps({"runs": runs, "model": model, "recipe": probe.source}, indent=2),
                                         encoding="utf-8")
                    except OSError:
                        pass  # an unwritable cache only costs the next run time
            results[label] = {"model": model, **_summary(runs)}
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    start, adapted = results["start"], results["adapted"]
    difference = adapted["mean"] - start["mean"]
    noise = max(start["std"], adapted["std"])
    first = adapted["runs"][0]
    report = {"recipe": settings.recipe, "task": probe_task.task,
              "split": first["split"], "metric": first["metric"], "seeds": seeds,
              "max_train_samples": settings.max_train_samples, "start": start, "adapted": adapted,
              "difference": difference, "larger_std": noise, "beats_start": difference > noise and difference > 0}
    _write(out, report)
    return report


def verdict(report: dict[str, Any]) -> str:
    d, noise = report["difference"], report["larger_std"]
    if report["beats_start"]:
        return f"the adapted model beats the start by {d:+.4f} (more than the larger seed std, {noise:.4f})"
    if d > 0:
        return (f"the adapted model does NOT clearly beat the start: {d:+.4f} is within the seeds' noise "
                f"(larger std {noise:.4f})")
    return f"the adapted model does NOT beat the start: {d:+.4f} (larger seed std {noise:.4f})"


def summary_lines(report: dict[str, Any]) -> list[str]:
    name = f"{report['split']} {report['metric']}"
    lines = []
    for label in ("start", "adapted"):
        r = report[label]
        values = ", ".join(f"{v:.4f}" for v in r["values"])
        lines.append(f"probe {label:<7} ({r['model']}): {name} {r['mean']:.4f} +- {r['std']:.4f} ({values})")
    lines.append(f"probe: {verdict(report)}")
    return lines


def _write(out: Path, report: dict[str, Any]) -> None:
    outputs.write_json(out / "probe.json", report)
    path = out / "metrics.json"
    metrics = json.loads(path.read_text(encoding="utf-8"))
    metrics["probe"] = {k: v for k, v in report.items() if k not in ("start", "adapted")} | {
        label: {k: report[label][k] for k in ("model", "mean", "std", "values")} for label in ("start", "adapted")}
    outputs.write_json(path, metrics)
    card = out / "README.md"
    if card.is_file():
        seeds = ", ".join(map(str, report["seeds"]))
        rows = "\n".join(f"| {label} | `{report[label]['model']}` | {report[label]['mean']:.4f} +- {report[label]['std']:.4f} |"
                         for label in ("start", "adapted"))
        capped = f", {report['max_train_samples']} training rows" if report["max_train_samples"] else ""
        card.write_text(card.read_text(encoding="utf-8").rstrip() + f"""

## Downstream probe

The starting and the adapted model were each fine-tuned with `{report['recipe']}` (identical settings,
seeds {seeds}{capped}); {report['split']} {report['metric']}, mean +- std over the seeds:

| model | weights | {report['split']} {report['metric']} |
|---|---|---|
{rows}

Verdict: {verdict(report)}.
""", encoding="utf-8")
