"""The ``bertkit`` command line: one small function per command.

Heavy libraries (torch, transformers, datasets) are imported inside the commands so that
``bertkit --help`` answers at once. Every ``BertkitError`` becomes ``error: ...`` / ``hint: ...`` on
stderr and exit code 1; ``BERTKIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from bertkit.cli_launch import ACCELERATE_CONFIG_HELP, INFER_PROCESSES_HELP, NUM_PROCESSES_HELP
from bertkit.cli_launch import command_line as _command_line
from bertkit.cli_launch import launch_if_asked as _launch
from bertkit.errors import BertkitError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Fine-tune, evaluate and inspect BERT-family models from YAML recipes.")

RECIPES_DIR = Path(__file__).resolve().parent.parent / "recipes"


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def handled(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn BertkitError (and Ctrl-C) into a one-line message and exit code instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        _quiet_libraries()
        try:
            return fn(*args, **kwargs)
        except BertkitError as exc:
            from bertkit import distributed

            if os.environ.get("BERTKIT_DEBUG") == "1":
                distributed.record_failure(exc)
                raise
            if not distributed.leave_to_launcher(exc):  # bertkit's launcher prints it once for all ranks
                typer.echo(f"{exc.label}: {distributed.rank_prefix()}{exc.message}", err=True)
                if exc.hint:
                    typer.echo(f"hint: {exc.hint}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            if os.environ.get("BERTKIT_DEBUG") == "1":
                raise
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None
        except Exception as exc:
            from bertkit import distributed

            distributed.record_failure(exc)  # under a launcher: names this rank's failure at the end
            raise

    return wrapper




def _resolve_recipe_path(recipe: str) -> str:
    """Accept a path, or the name of a shipped recipe (``quickstart`` -> recipes/quickstart.yaml)."""
    path = Path(recipe)
    if path.exists():
        return recipe
    for candidate in (RECIPES_DIR / recipe, RECIPES_DIR / f"{recipe}.yaml"):
        if candidate.exists():
            return str(candidate)
    return recipe


def _print_metrics(title: str, metrics: dict[str, Any]) -> None:
    flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    if flat:
        typer.echo(f"{title}: " + "  ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in flat.items()))


OVERRIDES_HELP = "key=value overrides, e.g. training.learning_rate=3e-5 data.train=train.jsonl"
QUIET_HELP = "no progress bars or lines, only the results"


@app.command()
@handled
def finetune(
    ctx: typer.Context,
    recipe: str = typer.Argument(..., help="recipe YAML (path or shipped name, see `bertkit recipes`)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its last checkpoint"),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=NUM_PROCESSES_HELP),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config", help=ACCELERATE_CONFIG_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also every training log record, one line each"),
    seeds: int = typer.Option(1, "--seeds", help="train N times with seeds seed..seed+N-1; keep the best on "
                              "validation; metrics.json gains mean, std and values per metric"),
    probe: Optional[str] = typer.Option(None, "--probe", help="adapt-domain: the finetune recipe to judge the "
                                        "adaptation by (as mlm.probe.recipe=RECIPE): start and adapted model are "
                                        "fine-tuned with it over mlm.probe.seeds seeds and compared"),
) -> None:
    """Fine-tune a model as the recipe says; writes model, metrics, predictions, card and plots."""
    from bertkit import console, distributed
    from bertkit import recipe as recipe_mod
    from bertkit import train

    if quiet and verbose:
        raise BertkitError("--quiet and --verbose contradict each other", "give one of them")
    console.set_level("quiet" if quiet else "verbose" if verbose else "normal")

    if probe:
        overrides = [*(overrides or []), f"mlm.probe.recipe={probe}"]
    resolved = recipe_mod.load(_resolve_recipe_path(recipe), overrides or [])  # recipe errors once, before launching
    if ctx.info_name == "adapt-domain" and resolved.task != "mlm":
        raise BertkitError(f"adapt-domain trains task: mlm recipes, and {resolved.source} is task: {resolved.task}",
                           f"run it with: bertkit finetune {recipe}")
    from bertkit import adaptation

    probed = resolved.task == "mlm" and adaptation.check(resolved) is not None  # the probe recipe checked before training
    if probed and (seeds != 1 or num_processes or accelerate_config):
        raise BertkitError("the downstream probe runs after a one-process, one-seed adaptation",
                           "drop --seeds / --num-processes / --accelerate-config, or the probe (mlm.probe)")
    if seeds != 1:
        if num_processes or accelerate_config or resume:
            raise BertkitError("--seeds runs one process at a time and starts afresh",
                               "drop --num-processes / --accelerate-config / --resume, or --seeds")
        from bertkit import seeds as seeds_mod

        metrics = seeds_mod.run(resolved, seeds, overwrite=overwrite, command=_command_line())
        for line in seeds_mod.summary_lines(metrics["seeds"]):
            typer.echo(line)
        typer.echo(f"saved to {resolved.output_dir}")
        return
    if _launch(ctx, num_processes, accelerate_config):
        return
    metrics = train.run(resolved, overwrite=overwrite, resume=resume, command=_command_line())
    if not distributed.is_main_process():
        return  # one process reports for all
    for split in ("validation", "test"):
        if split in metrics:
            _print_metrics(split, metrics[split])
    for split, before in metrics.get("before", {}).items():  # mlm: the starting model, measured the same way
        typer.echo(f"held-out {split} perplexity: {before['perplexity']:.2f} before -> "
                   f"{metrics[split]['perplexity']:.2f} after; masked-token accuracy {before['accuracy']:.4f} -> "
                   f"{metrics[split]['accuracy']:.4f}")
    speed = metrics["train"]["samples_per_second"]
    typer.echo(f"train: {metrics['train']['seconds']} s" + (f", {speed} samples/s" if speed else " (no steps were left to run)"))
    if probed:
        typer.echo(f"saved to {resolved.output_dir}; now the downstream probe")
        report = adaptation.run_probe(resolved, command=_command_line())
        for line in adaptation.summary_lines(report):
            typer.echo(line)
    typer.echo(f"saved to {resolved.output_dir}")



@app.command()
@handled
def distill(
    teacher: str = typer.Argument(..., help="a fine-tuned model directory (bertkit finetune's output)"),
    overrides: Optional[list[str]] = typer.Argument(None, help="distill.KEY=VALUE (student_layers, student, "
                                                    "temperature, alpha, hidden_weight, unlabeled, max_unlabeled, "
                                                    "compare_labels_only, epochs) and recipe overrides of the teacher's recipe"),
    output: str = typer.Option(..., "--output", "-o", help="the student's model directory"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Distill a fine-tuned teacher into a smaller student (fewer layers or another encoder) on its data."""
    from bertkit import console
    from bertkit import distill as distill_mod

    console.set_level("quiet" if quiet else "normal")
    metrics = distill_mod.run(teacher, overrides or [], output, overwrite=overwrite, command=_command_line())
    for split in ("validation", "test"):
        if split in metrics:
            _print_metrics(split, metrics[split])
    for line in distill_mod.summary_lines(metrics["distill"]):
        typer.echo(line)
    typer.echo(f"saved to {output}")


@app.command()
@handled
def tune(
    recipe: str = typer.Argument(..., help="recipe YAML (path or shipped name); its tune: block is the search space"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    trials: int = typer.Option(20, "--trials", help="finished trials in the study in all, across every worker sharing it "
                               "(a resumed study counts its finished ones)"),
    timeout: Optional[float] = typer.Option(None, "--timeout", help="stop starting trials after this many seconds"),
    storage: Optional[str] = typer.Option(None, "--storage", help="study shared by several workers: a database URL "
                                          "(postgresql://user:pw@host/db) or journal:///shared/path/study.log "
                                          "(default: sqlite in OUTPUT_DIR/tune/study.db)"),
    study: Optional[str] = typer.Option(None, "--study", help="study name in the storage (default: bertkit)"),
    grace: int = typer.Option(60, "--grace", help="a shared study's trial whose worker sent no heartbeat for this many "
                              "seconds is marked failed and its slot run again"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Search learning rate, epochs, batch size, warmup and weight decay (or the recipe's tune: block) with Optuna."""
    from bertkit import console
    from bertkit import recipe as recipe_mod
    from bertkit import tune as tune_mod

    console.set_level("quiet" if quiet else "normal")
    resolved = recipe_mod.load(_resolve_recipe_path(recipe), overrides or [])
    best = tune_mod.run(resolved, trials=trials, timeout=timeout, storage=storage, study_name=study, grace=grace)
    values = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in best["values"].items())
    typer.echo(f"best of {best['trials']} trials: trial {best['trial']}, validation {best['metric']}={best['value']:.4f} ({values})")
    model = best["model"] or f"in worker {best['worker']}'s output folder"  # a shared study's best may come from another machine
    typer.echo(f"model: {model}; recipe: {best['folder']}/best.yaml (bertkit finetune {best['folder']}/best.yaml)")


@app.command()
@handled
def export(
    model_dir: str = typer.Argument(..., help="a trained model directory"),
    output: str = typer.Option(..., "--output", "-o", help="the export directory to write"),
    quantize: Optional[str] = typer.Option(None, "--quantize", help="int8: int8 matrix multiplies (default: fp32)"),
    activations: str = typer.Option("dynamic", "--activations",
                                    help="int8 activation ranges: dynamic (per batch) or static (fitted on --calibration)"),
    calibration: Optional[str] = typer.Option(None, "--calibration",
                                              help="inputs like those the model will see: the first ones calibrate, the rest check"),
    check: Optional[str] = typer.Option(None, "--check", help="inputs to check the export against the PyTorch model on"),
    min_agreement: float = typer.Option(0.99, "--min-agreement", help="refuse an export that agrees less than this"),
    force: bool = typer.Option(False, "--force", help="write the export even under --min-agreement, or with "
                               "fewer unseen check rows than export.MIN_UNSEEN_ROWS (200)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Export a trained model to ONNX (fp32 or int8), checked against the PyTorch model (export_report.json)."""
    from bertkit import console
    from bertkit import export as export_mod

    console.set_level("quiet" if quiet else "normal")

    report = export_mod.run(model_dir, output, quantize=quantize, activations=activations, calibration=calibration,
                            check=check, min_agreement=min_agreement, force=force, overwrite=overwrite)
    typer.echo(export_mod.summary(report))
    typer.echo(f"wrote {output} (predict, evaluate and serve take it as they take a model directory)")


@app.command()
@handled
def serve(
    model_dir: str = typer.Argument(..., help="a trained model directory or its ONNX export"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (0.0.0.0: every interface)"),
    port: int = typer.Option(8000, "--port"),
    max_batch: int = typer.Option(64, "--max-batch", help="inputs run together at most"),
    wait_ms: float = typer.Option(5.0, "--wait-ms", help="how long the first request waits for others to batch with"),
    workers: int = typer.Option(1, "--workers", help="worker processes behind the port, each with the model loaded "
                                "once and its share of the CPU cores"),
) -> None:
    """Serve a trained model over HTTP: POST /predict {"inputs": [...]}, GET /health, GET /metadata."""
    from pathlib import Path

    from bertkit import serve as serve_mod

    if workers < 1:
        raise BertkitError(f"--workers must be 1 or more, got {workers}", "give --workers 1 for one process")
    if not (Path(model_dir) / "config.json").is_file():
        raise BertkitError(f"{model_dir} is not a trained model directory (no config.json)",
                           "give the output_dir of bertkit finetune")
    processes = f", {workers} worker processes" if workers > 1 else ""
    typer.echo(f"serving {model_dir} on http://{host}:{port} (POST /predict, GET /health, GET /metadata{processes})",
               err=True)
    serve_mod.run(model_dir, host, port, max_batch=max_batch, wait_ms=wait_ms, workers=workers)


@app.command()
@handled
def validate(
    recipe: str = typer.Argument(..., help="recipe YAML (path or shipped name)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
) -> None:
    """Dry run: resolve the recipe, load data and tokenizer, check columns and labels, report lengths."""
    from bertkit import console
    from bertkit import recipe as recipe_mod
    from bertkit import train

    console.set_level("quiet" if quiet else "normal")

    resolved = recipe_mod.load(_resolve_recipe_path(recipe), overrides or [])
    prepared = train.prepare(resolved)
    typer.echo(f"recipe {resolved.source}: OK")
    for line in train.summary_lines(prepared):
        typer.echo(line)
    typer.echo(f"output_dir: {resolved.output_dir}" + (" (exists: finetune needs --overwrite)"
                                                      if Path(resolved.output_dir).exists() else ""))


@app.command()
@handled
def evaluate(
    ctx: typer.Context,
    model_dir: str = typer.Argument(..., help="a trained model directory or its ONNX export"),
    data: str = typer.Argument(..., help="data file (csv/tsv/json/jsonl/parquet) or hub dataset id"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. data.text_column=review"),
    split: Optional[str] = typer.Option(None, "--split", help="hub dataset split (default: test)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="where to write metrics.json and predictions.jsonl"),
    batch_size: int = typer.Option(64, "--batch-size"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=INFER_PROCESSES_HELP),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config", help=ACCELERATE_CONFIG_HELP),
) -> None:
    """Evaluate a trained model on a dataset and write a metrics report."""
    from bertkit import console, distributed, evaluation

    console.set_level("quiet" if quiet else "normal")
    if _launch(ctx, num_processes, accelerate_config):
        return
    metrics, target = evaluation.evaluate(model_dir, data, split=split, overrides=overrides or [],
                                          output_dir=output_dir, batch_size=batch_size)
    if not distributed.is_main_process():
        return
    _print_metrics("metrics", metrics)
    typer.echo(f"wrote {target / 'metrics.json'} and {target / 'predictions.jsonl'}")


@app.command()
@handled
def predict(
    ctx: typer.Context,
    model_dir: str = typer.Argument(..., help="a trained model directory or its ONNX export"),
    source: Optional[str] = typer.Argument(None, help="input JSONL/CSV/TSV/TXT file, or - for stdin"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. data.text_column=review"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="JSONL file to write (default: stdout)"),
    batch_size: int = typer.Option(64, "--batch-size"),
    text: Optional[str] = typer.Option(None, "--text", help="one text to predict instead of a file"),
    question: Optional[str] = typer.Option(None, "--question", help="QA: one question (with --context)"),
    context: Optional[str] = typer.Option(None, "--context", help="QA: the context of --question"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=INFER_PROCESSES_HELP),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config", help=ACCELERATE_CONFIG_HELP),
) -> None:
    """Predict labels with scores for every input line; JSONL out, one line per input."""
    from bertkit import console, distributed, evaluation

    console.set_level("quiet" if quiet else "normal")
    if source is not None and "=" in source and (text or question or context):
        overrides, source = [source, *(overrides or [])], None  # `predict MODEL --text T key=value`
    one = _one_input(source, text, question, context)
    if _launch(ctx, num_processes, accelerate_config):
        return
    count = evaluation.predict(model_dir, source, output=output, overrides=overrides or [], batch_size=batch_size, one=one)
    if output and distributed.is_main_process():
        typer.echo(f"wrote {count} predictions to {output}", err=True)


def _one_input(source: str | None, text: str | None, question: str | None, context: str | None) -> dict | None:
    """The row that --text or --question/--context give, or None when the input is a file or stdin."""
    given = [name for name, value in (("--text", text), ("--question", question), ("--context", context)) if value is not None]
    if not given:
        if source is None:
            raise BertkitError("predict needs an input: a file, - for stdin, --text, or --question with --context",
                               "e.g. bertkit predict runs/quickstart --text 'A delight.'")
        return None
    if source is not None:
        raise BertkitError(f"predict got both an input file ({source}) and {given[0]}", "give one of them")
    if text is not None and (question is not None or context is not None):
        raise BertkitError("--text is for one text; --question and --context are for question answering",
                           "give --text, or --question with --context")
    if text is not None:
        return {"text": text}
    if question is None or context is None:
        raise BertkitError("--question and --context go together", "give both, e.g. --question 'Who?' --context '...'")
    return {"question": question, "context": context}


@app.command("recipes")
@handled
def list_recipes() -> None:
    """List the shipped recipes with one line each."""
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        typer.echo(f"{path.stem:<28} {recipe_purpose(path)}")


def recipe_purpose(path: Path, width: int = 110) -> str:
    """What a recipe is for: the first sentence of its header comment, past the command line and the
    "Override anything ..." line that every shipped recipe opens with."""
    words: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.lstrip("#").strip()
        if not line.startswith("#"):
            break
        if not text or text.startswith("bertkit ") or text.startswith("Override anything"):
            if words:
                break
            continue
        words += text.split()
        if text.endswith(".") or ". " in text:
            break
    sentence = " ".join(words)
    sentence = sentence.split(". ")[0].rstrip(".")
    return sentence if len(sentence) <= width else sentence[: width - 3].rsplit(" ", 1)[0] + "..."


@app.command("build-tokenizer")
@handled
def build_tokenizer(
    corpus: list[str] = typer.Argument(..., help="text files (.txt a line each, .jsonl with text, SQuAD .json)"),
    lang: str = typer.Option(..., "--lang", help="ja (MeCab + WordPiece, Tohoku-style) or en (fast WordPiece)"),
    vocab_size: int = typer.Option(32000, "--vocab-size"),
    output: str = typer.Option(..., "--output", help="directory to write the tokenizer to"),
    model_max_length: int = typer.Option(512, "--model-max-length"),
    mecab_dic: str = typer.Option("unidic_lite", "--mecab-dic", help="ja only: unidic_lite, ipadic or unidic"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Train a WordPiece vocabulary on a corpus and save a tokenizer AutoTokenizer can load."""
    from bertkit import build, outputs

    work = outputs.prepare(output, overwrite=overwrite)
    build.build_tokenizer(list(corpus), lang, vocab_size, str(work), model_max_length=model_max_length,
                          mecab_dic=mecab_dic)
    outputs.publish(work, output)
    typer.echo(f"saved a {lang} tokenizer to {output}")


@app.command("init-model")
@handled
def init_model(
    tokenizer: str = typer.Option(..., "--tokenizer", help="tokenizer directory (e.g. from build-tokenizer)"),
    size: str = typer.Option("tiny", "--size", help="micro, tiny, mini, small or base (standard BERT shapes)"),
    output: str = typer.Option(..., "--output"),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Save a randomly initialised BERT (with MLM head) for a tokenizer: the start for pretraining."""
    from bertkit import build, console, outputs

    console.set_level("normal")  # transformers' "Writing model shards" bar: verbose only

    work = outputs.prepare(output, overwrite=overwrite)
    build.init_model(tokenizer, size, str(work), seed=seed)
    outputs.publish(work, output)
    typer.echo(f"saved a random {size} BERT to {output}")


def _japanese_options(model: str, mecab_dic: str | None, pre_segment: str | None):
    """The ``japanese:`` options for a tool command: a trained model's recipe.yaml, then the options given."""
    from pathlib import Path

    from bertkit import recipe as recipe_mod

    saved = Path(model) / "recipe.yaml"
    values = dict((recipe_mod.read_yaml(saved).get("japanese") or {}) if saved.is_file() else {})
    values.update({k: v for k, v in (("mecab_dic", mecab_dic), ("pre_segment", pre_segment)) if v is not None})
    tree = {"task": "mlm", "model": model, "output_dir": ".", "data": {}, "japanese": values}
    return recipe_mod.from_dict(tree, for_training=False).japanese


@app.command()
@handled
def tokenize(
    model: str = typer.Argument(..., help="model or tokenizer directory, alias (minilm-l6) or hub id"),
    texts: list[str] = typer.Argument(..., help="texts to tokenize"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
    mecab_dic: Optional[str] = typer.Option(None, "--mecab-dic", help="ipadic, unidic_lite, unidic or jumandic "
                                            "(default: the model's recipe.yaml, else the tokenizer's config)"),
    pre_segment: Optional[str] = typer.Option(None, "--pre-segment", help="jumanpp or mecab: segment the text "
                                              "with spaces first (default: the model's recipe.yaml, else none)"),
) -> None:
    """Show tokens, ids, word ids and character spans for each text."""
    import json

    from bertkit import build, models

    tok = models.load_tokenizer(model, japanese=_japanese_options(model, mecab_dic, pre_segment))
    tables = build.token_table(tok, list(texts))
    if as_json:
        typer.echo(json.dumps([{"text": t, "tokens": table} for t, table in zip(texts, tables)], ensure_ascii=False, indent=1))
    else:
        typer.echo(build.format_token_table(tables, list(texts)))


@app.command()
@handled
def embed(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="model directory, alias (minilm-l6) or hub id"),
    source: str = typer.Argument(..., help="input TXT (a text a line), JSONL, CSV or TSV file, or - for stdin"),
    pooling: str = typer.Option("mean", "--pooling", help="mean, max, cls or pooler"),
    normalize: bool = typer.Option(False, "--normalize", help="scale every vector to length 1"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help=".npy or .jsonl file to write"),
    similarity: bool = typer.Option(False, "--similarity", help="write the inputs' cosine-similarity matrix (+ a .png heatmap) instead"),
    query: Optional[str] = typer.Option(None, "--query", help="rank the inputs by similarity to this text"),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="with --query: how many hits (default 10)"),
    text_column: str = typer.Option("text", "--text-column", help="field holding the text in JSONL/CSV/TSV input"),
    max_length: Optional[int] = typer.Option(None, "--max-length", help="tokens per input (default: the model's)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help=QUIET_HELP),
    num_processes: Optional[int] = typer.Option(None, "--num-processes", help=INFER_PROCESSES_HELP),
    accelerate_config: Optional[str] = typer.Option(None, "--accelerate-config", help=ACCELERATE_CONFIG_HELP),
) -> None:
    """Sentence vectors for every input line, their similarity matrix, or a semantic search over them."""
    from bertkit import console, distributed
    from bertkit import embed as embed_mod

    console.set_level("quiet" if quiet else "normal")
    if _launch(ctx, num_processes, accelerate_config):
        return
    result = embed_mod.run(model, source, pooling=pooling, normalize=normalize, output=output, similarity=similarity,
                           query=query, top_k=top_k, text_column=text_column, max_length=max_length,
                           batch_size=batch_size)
    if not distributed.is_main_process():
        return
    if result["truncated"]:
        typer.echo(f"note: {result['truncated']} inputs were longer than {result['max_length']} tokens and were cut",
                   err=True)
    if query is not None:
        if not output:
            for hit in result["hits"]:
                typer.echo(f"{hit['rank']:>3}  {hit['score']:.4f}  {hit['text']}")
        else:
            typer.echo(f"wrote the top {len(result['hits'])} of {result['count']} inputs to {output}", err=True)
    elif similarity:
        typer.echo(f"wrote the {result['count']}x{result['count']} similarity matrix to {output} and {result['plot']}")
    else:
        typer.echo(f"wrote {result['count']} vectors of dimension {result['dim']} ({pooling} pooling"
                   f"{', normalized' if normalize else ''}) to {output}")


inspect_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Look inside a model: attention maps, positional encodings.")
app.add_typer(inspect_app, name="inspect")


@inspect_app.command("attention")
@handled
def inspect_attention(
    model: str = typer.Argument(..., help="model directory, alias (minilm-l6) or hub id"),
    text: str = typer.Argument(..., help="the text whose attention to draw"),
    layer: Optional[int] = typer.Option(None, "--layer", help="layer, from 0 (default: the last; -1 counts from the end)"),
    head: Optional[int] = typer.Option(None, "--head", help="one head, from 0 (default: a grid of every head)"),
    output: str = typer.Option("attention.png", "--output", "-o", help="PNG file to write"),
) -> None:
    """Heatmap of attention weights, tokens on both axes: one head, or every head of a layer."""
    from bertkit import inspection

    tokens, weights, cut = inspection.attention_weights(model, text)
    drawn_layer, drawn_head = inspection.plot_attention(tokens, weights, output, layer=layer, head=head)
    heads = f"head {drawn_head}" if drawn_head is not None else f"all {weights.shape[1]} heads"
    typer.echo(f"wrote {output}: layer {drawn_layer} of 0-{weights.shape[0] - 1}, {heads}, {len(tokens)} tokens"
               + (f" (text cut to {len(tokens)} tokens)" if cut else ""))


@inspect_app.command("positional-encoding")
@handled
def inspect_positional_encoding(
    d_model: int = typer.Option(128, "--d-model", help="vector width"),
    max_len: int = typer.Option(100, "--max-len", help="number of positions"),
    output: str = typer.Option("positional_encoding.png", "--output", "-o", help="PNG file to write"),
) -> None:
    """The sinusoidal positional encoding of the original Transformer, as an image."""
    from bertkit import inspection

    inspection.plot_positional_encoding(d_model, max_len, output)
    typer.echo(f"wrote {output}: {max_len} positions x {d_model} dimensions")


# The same command under a second name, for task: mlm recipes (finetune runs them too).
app.command("adapt-domain", help="Masked-language-model training on a domain corpus, or from scratch (task: mlm "
            "recipes): held-out perplexity before and after; fine-tune the result with finetune model=OUTPUT_DIR.")(finetune)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
