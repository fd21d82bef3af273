"""The ``bertkit`` command line: one small function per command.

Heavy libraries (torch, transformers, datasets) are imported inside the commands so that
``bertkit --help`` answers at once. Every ``BertkitError`` becomes ``error: ...`` / ``hint: ...`` on
stderr and exit code 1; ``BERTKIT_DEBUG=1`` shows the traceback instead.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

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
            if os.environ.get("BERTKIT_DEBUG") == "1":
                raise
            typer.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                typer.echo(f"hint: {exc.hint}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if os.environ.get("BERTKIT_DEBUG") == "1":
                raise
            typer.echo("interrupted", err=True)
            raise typer.Exit(130) from None

    return wrapper


def _command_line() -> str:
    return "bertkit " + " ".join(shlex.quote(a) for a in sys.argv[1:])


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


@app.command()
@handled
def finetune(
    recipe: str = typer.Argument(..., help="recipe YAML (path or shipped name, see `bertkit recipes`)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing output directory"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run from its last checkpoint"),
) -> None:
    """Fine-tune a model as the recipe says; writes model, metrics, predictions, card and plots."""
    from bertkit import recipe as recipe_mod
    from bertkit import train

    resolved = recipe_mod.load(_resolve_recipe_path(recipe), overrides or [])
    metrics = train.run(resolved, overwrite=overwrite, resume=resume, command=_command_line())
    for split in ("validation", "test"):
        if split in metrics:
            _print_metrics(split, metrics[split])
    typer.echo(f"train: {metrics['train']['seconds']} s, {metrics['train']['samples_per_second']} samples/s")
    typer.echo(f"saved to {resolved.output_dir}")


@app.command()
@handled
def validate(
    recipe: str = typer.Argument(..., help="recipe YAML (path or shipped name)"),
    overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
) -> None:
    """Dry run: resolve the recipe, load data and tokenizer, check columns and labels, report lengths."""
    from bertkit import recipe as recipe_mod
    from bertkit import train

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
    model_dir: str = typer.Argument(..., help="a trained model directory"),
    data: str = typer.Argument(..., help="data file (csv/tsv/json/jsonl/parquet) or hub dataset id"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. data.text_column=review"),
    split: Optional[str] = typer.Option(None, "--split", help="hub dataset split (default: test)"),
    output_dir: Optional[str] = typer.Option(None, "--output-dir", help="where to write metrics.json and predictions.jsonl"),
    batch_size: int = typer.Option(64, "--batch-size"),
) -> None:
    """Evaluate a trained model on a dataset and write a metrics report."""
    from bertkit import evaluation

    metrics, target = evaluation.evaluate(model_dir, data, split=split, overrides=overrides or [],
                                          output_dir=output_dir, batch_size=batch_size)
    _print_metrics("metrics", metrics)
    typer.echo(f"wrote {target / 'metrics.json'} and {target / 'predictions.jsonl'}")


@app.command()
@handled
def predict(
    model_dir: str = typer.Argument(..., help="a trained model directory"),
    source: str = typer.Argument(..., help="input JSONL/CSV/TSV/TXT file, or - for stdin"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. data.text_column=review"),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="JSONL file to write (default: stdout)"),
    batch_size: int = typer.Option(64, "--batch-size"),
) -> None:
    """Predict labels with scores for every input line; JSONL out, one line per input."""
    from bertkit import evaluation

    count = evaluation.predict(model_dir, source, output=output, overrides=overrides or [], batch_size=batch_size)
    if output:
        typer.echo(f"wrote {count} predictions to {output}", err=True)


@app.command("recipes")
@handled
def list_recipes() -> None:
    """List the shipped recipes with one line each."""
    for path in sorted(RECIPES_DIR.glob("*.yaml")):
        first = ""
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("#") and not line.lstrip("# ").startswith("bertkit "):
                first = line.lstrip("# ").strip()
                break
        typer.echo(f"{path.stem:<24} {first}")


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
    from bertkit import build, outputs

    work = outputs.prepare(output, overwrite=overwrite)
    build.init_model(tokenizer, size, str(work), seed=seed)
    outputs.publish(work, output)
    typer.echo(f"saved a random {size} BERT to {output}")


@app.command()
@handled
def tokenize(
    model: str = typer.Argument(..., help="model or tokenizer directory, alias (minilm-l6) or hub id"),
    texts: list[str] = typer.Argument(..., help="texts to tokenize"),
    as_json: bool = typer.Option(False, "--json", help="print JSON instead of a table"),
) -> None:
    """Show tokens, ids, word ids and character spans for each text."""
    import json

    from bertkit import build, models

    tok = models.load_tokenizer(model)
    tables = build.token_table(tok, list(texts))
    if as_json:
        typer.echo(json.dumps([{"text": t, "tokens": table} for t, table in zip(texts, tables)], ensure_ascii=False, indent=1))
    else:
        typer.echo(build.format_token_table(tables, list(texts)))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
