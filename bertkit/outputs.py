"""The output directory: staged, then published atomically; its files, model card and plots.

A run writes into ``<output_dir>.partial`` (checkpoints live there too, so ``--resume`` finds them)
and only a finished run is renamed to ``output_dir``. A crash, Ctrl-C or a full disk therefore never
leaves a directory that looks like a complete model.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bertkit import hardware
from bertkit.errors import BertkitError


def staging_dir(output_dir: str | Path) -> Path:
    output_dir = Path(output_dir)
    return output_dir.with_name(output_dir.name + ".partial")


def prepare(output_dir: str | Path, *, overwrite: bool = False, resume: bool = False) -> Path:
    """Check ``output_dir`` can be written and return the staging directory to write into."""
    output_dir = Path(output_dir)
    work = staging_dir(output_dir)
    check_writable(output_dir, overwrite=overwrite)
    if resume and not work.is_dir():
        raise BertkitError(f"nothing to resume: {work} does not exist",
                           "resume continues an interrupted run with the same output_dir; start without --resume")
    if work.exists() and not resume:
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    return work


def check_writable(output_dir: str | Path, *, overwrite: bool = False) -> None:
    """Refuse an existing, non-empty ``output_dir`` (unless ``overwrite``) or one that cannot be created;
    creates its parent directory, nothing else."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise BertkitError(f"output_dir {output_dir} is a file", "choose another output_dir=...")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise BertkitError(f"output directory {output_dir} already exists and is not empty",
                           "pass --overwrite to replace it, or choose output_dir=another/path")
    parent = output_dir.parent if str(output_dir.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BertkitError(f"cannot create {parent}: {exc.strerror}", "choose a writable output_dir=...") from exc
    if not os.access(parent, os.W_OK):
        raise BertkitError(f"cannot write output_dir {output_dir}: the directory {parent} is not writable",
                           "choose a writable output_dir=..., or fix the permissions of that directory")


def publish(work: Path, output_dir: str | Path, keep: tuple[str, ...] = ()) -> Path:
    """Drop checkpoints, then swap the finished staging directory into place in one rename."""
    output_dir = Path(output_dir)
    for child in work.glob("checkpoint-*"):
        if child.name not in keep:
            shutil.rmtree(child)
    old = output_dir.with_name(output_dir.name + ".old")
    if output_dir.exists():
        if old.exists():
            shutil.rmtree(old)
        output_dir.rename(old)
    work.rename(output_dir)
    if old.exists():
        shutil.rmtree(old)
    return output_dir


def discard(work: Path) -> None:
    """Remove a staging directory that holds nothing worth keeping (a run that failed early)."""
    shutil.rmtree(work, ignore_errors=True)


def is_write_failure(exc: BaseException) -> bool:
    """Whether a failure during a run is the run's own writing failing (a full disk, typically).

    The readers turn their OSErrors into BertkitErrors, so a bare OSError here is a write; torch.save
    reports a short write as a RuntimeError; a writer's BertkitError counts when a full disk caused it.
    """
    import errno

    if isinstance(exc, BertkitError):
        cause = exc.__cause__
        return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)
    text = str(exc).lower()
    return isinstance(exc, OSError) or any(w in text for w in ("unexpected pos", "failed writing",
                                                               "file write failed"))


def write_error(work: Path, exc: BaseException, resume_command: str) -> BertkitError:
    """One sentence for a failure while a run writes (a full disk, above all), and what is kept."""
    import errno

    if isinstance(exc, BertkitError) and exc.__cause__ is not None:
        exc = exc.__cause__
    target = getattr(exc, "filename", None) or work
    where = work.absolute()
    while not where.exists():
        where = where.parent
    free = shutil.disk_usage(where).free
    # torch.save says only "unexpected pos": a nearly full disk is then the likely cause
    if getattr(exc, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or (not isinstance(exc, OSError)
                                                                        and free < 64 * 2**20):
        message = (f"the disk is full ({free // 1024} KiB free): writing {target} failed, "
                   f"so nothing was published at {work.with_name(work.name.removesuffix('.partial'))}")
    else:
        message = f"writing {target} failed: {getattr(exc, 'strerror', None) or str(exc).splitlines()[0]}"
    hint = "free disk space or choose output_dir on another disk, then run again"
    if last_complete_checkpoint(work):
        hint += f"; `{resume_command}` continues from the last complete checkpoint in {work}"
    error = BertkitError(message, hint)
    error.__cause__ = exc  # BERTKIT_DEBUG=1 shows where the write failed
    return error


def last_complete_checkpoint(work: Path) -> str | None:
    """The newest ``checkpoint-N`` in ``work`` that was written to the end (has ``trainer_state.json``)."""
    if not Path(work).is_dir():
        return None
    found = []
    for child in Path(work).iterdir():
        name, _, step = child.name.partition("-")
        if name == "checkpoint" and step.isdigit() and (child / "trainer_state.json").is_file():
            found.append((int(step), str(child)))
    return max(found)[1] if found else None


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """Yield a sibling ``.partial`` path to write; it replaces ``path`` only if the block completes.

    On any error (or Ctrl-C) the partial file is removed, so ``path`` is never left half-written.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    try:
        yield partial
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def json_safe(value: Any) -> Any:
    """JSON-safe: numpy scalars to Python, NaN/inf to null."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, obj: Any) -> None:
    try:
        Path(path).write_text(json.dumps(json_safe(obj), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError as exc:
        raise BertkitError(f"cannot write {path}: {exc.strerror}", "free disk space or choose another output_dir") from exc


def write_jsonl(path: str | Path, rows: Any) -> int:
    n = 0
    try:
        with open(path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(json_safe(row), ensure_ascii=False) + "\n")
                n += 1
    except OSError as exc:
        raise BertkitError(f"cannot write {path}: {exc.strerror}", "free disk space or choose another output_dir") from exc
    return n


# ---------------------------------------------------------------------------------------------
# Model card


def model_card(*, recipe: Any, model_desc: str, task_desc: str, labels: list[str] | None, split_sizes: dict[str, int],
               metrics: dict[str, Any], lengths: dict[str, Any], notes: list[str], command: str) -> str:
    """A README.md for the output directory: what was trained on what, how well, and how to load it."""
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {task_desc}",
        "tags: [bertkit]",
        "---",
        "",
        f"# {Path(recipe.output_dir).name}",
        "",
        f"Fine-tuned with bertkit from **{model_desc}** for **{recipe.task}**.",
        "",
        "## Data",
        "",
    ]
    data = recipe.data
    source = f"hub dataset `{data.dataset}`" + (f" ({data.config})" if data.config else "") if data.dataset else "local files"
    lines.append(f"- Source: {source}")
    for split in ("train", "validation", "test"):
        where = getattr(data, split)
        if split in split_sizes:
            origin = f" from `{where}`" if where else (" (held out from train with the recipe's seed)" if split == "validation" else "")
            lines.append(f"- {split}: {split_sizes[split]} examples{origin}")
    if lengths:
        cut = (lengths["note_windows"] if "note_windows" in lengths else
               f"{lengths.get('truncated', 0)} ({lengths.get('truncated_pct', 0)} %) longer than "
               f"max_length={recipe.max_length}")
        lines.append(f"- Tokens per training example: median {lengths.get('tokens_p50')}, 90th percentile "
                     f"{lengths.get('tokens_p90')}, max {lengths.get('tokens_max')}; {cut}")
    if labels:
        lines += ["", "## Labels", "", ", ".join(f"`{label}`" for label in labels[:100])]
    lines += ["", "## Hyper-parameters", "", "| key | value |", "|---|---|"]
    args = recipe.training_args()
    for key in ("num_train_epochs", "learning_rate", "per_device_train_batch_size", "weight_decay", "warmup_steps",
                "seed"):
        lines.append(f"| {key} | {args.get(key)} |")
    lines.append(f"| max_length | {recipe.max_length} |")
    lines.append(f"| precision | {hardware.precision_choice(recipe.precision)[1]} |")
    lines += ["", "## Results", ""]
    for split, values in metrics.items():
        if not isinstance(values, dict):
            continue
        flat = {k: v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if flat:
            lines.append(f"**{split}**: " + ", ".join(f"{k} = {v:.4f}" if isinstance(v, float) else f"{k} = {v}"
                                                       for k, v in flat.items()))
            lines.append("")
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    lines += ["## Use", ""] + _use_in_python(task_desc, Path(recipe.output_dir).name) + [
        "or from the shell:",
        "",
        "```",
        f"bertkit predict {recipe.output_dir} input.jsonl --output predictions.jsonl",
        "```",
        "",
        "## Reproduce",
        "",
        "```",
        command,
        "```",
        "",
        "`recipe.yaml` in this directory holds every resolved setting.",
        "",
    ]
    return "\n".join(lines)


def _use_in_python(task_desc: str, name: str) -> list[str]:
    """The model card's Python snippet: a ``transformers`` pipeline where v5 still has one for the task."""
    from transformers.pipelines import SUPPORTED_TASKS

    if task_desc in SUPPORTED_TASKS:
        return ["```python", "from transformers import pipeline", f'pipe = pipeline("{task_desc}", model="{name}")', "```", ""]
    # transformers 5 removed the question-answering pipeline: the model and tokenizer load as usual.
    return ["```python", "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
            f'model = AutoModelForQuestionAnswering.from_pretrained("{name}")',
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")', "```", "",
            "(transformers 5 has no question-answering pipeline; `bertkit predict` below does the windowing and "
            "answer search.)", ""]
