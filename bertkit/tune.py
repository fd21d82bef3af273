"""``bertkit tune``: search a recipe's settings with Optuna, on validation data only.

Each trial is a whole ``train.run`` of the recipe with the trial's values as overrides, its test split
removed (the search never sees test data) and a validation split guaranteed (``data.validation_size``
0.1 when the recipe has none). Optuna's TPE sampler (seeded by the recipe's seed) proposes values;
the median pruner stops a trial whose per-epoch validation metric falls below the median of earlier
trials at the same epoch. The objective is the task's best-model metric on validation.

Everything goes to ``OUTPUT_DIR/tune/``: ``study.db`` (SQLite: a killed tune resumes from it),
``trials.csv``, ``best.yaml`` (a complete recipe: ``bertkit finetune best.yaml`` reproduces the best
trial, test split restored), ``search.png`` and the best trial's model alone (``trial-N``; the others are
deleted).

Several workers (processes, machines) share one study through ``--storage URL`` (a database server
such as PostgreSQL, or ``journal:///path`` on a shared file system; ``bertkit.study``), Optuna's own
distributed mode. ``--trials N`` is the study's total across them; trial numbers come from the storage,
so trial directories never collide; a worker killed mid-trial stops its heartbeat and its trial is
marked FAIL by the others after ``--grace`` seconds, and its slot is run again. Each worker writes
trials.csv, best.yaml and search.png from the storage after each of its trials and once more when it
ends, so the last worker to end leaves the whole study's picture. Shared studies sample with an
unseeded TPE (workers seeded alike would draw the same random start); a private one is seeded.

The search space is the recipe's ``tune:`` block, a mapping from a recipe key (dotted; a bare name
is a ``training.`` key) to a range ``{low, high, log}`` (integers when both ends are) or a list of
choices; without one, ``DEFAULT_SPACE``. What this does not do: search the model or the task, or run
trials in parallel in one process (start one worker per GPU or machine with ``--storage``).
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from bertkit import console
from bertkit import recipe as recipe_mod
from bertkit.errors import BertkitError

# Ranges that suit small and base encoders alike: small models (MiniLM) want higher learning rates
# than the 2e-5 of bert-base recipes, small data more epochs.
DEFAULT_SPACE: dict[str, Any] = {
    "training.learning_rate": {"low": 1.0e-5, "high": 3.0e-4, "log": True},
    "training.num_train_epochs": {"low": 1, "high": 5},
    "training.per_device_train_batch_size": [8, 16, 32],
    "training.warmup_steps": {"low": 0.0, "high": 0.2},
    "training.weight_decay": {"low": 0.0, "high": 0.1},
}


def worker() -> str:
    """This process, as its trials (user attribute ``worker``) and the other workers' messages name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def finished_states() -> tuple[Any, ...]:
    """The trial states that count towards --trials (FAIL does not: its slot is run again)."""
    import optuna

    return (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


def search_space(recipe: recipe_mod.Recipe, tree: dict[str, Any]) -> dict[str, Any]:
    """The recipe's ``tune:`` block (or the default), keys made full and every key and range checked."""
    raw = DEFAULT_SPACE if recipe.tune is None else recipe.tune
    if not raw:
        raise BertkitError("the recipe's tune: block names no setting to search",
                           "add one, e.g. tune: {learning_rate: {low: 1.0e-5, high: 1.0e-4, log: true}}, or remove the block")
    space: dict[str, Any] = {}
    for name, spec in raw.items():
        key = name if "." in name or name in recipe_mod.TOP_LEVEL else f"training.{name}"
        if isinstance(spec, list):
            if not spec:
                raise BertkitError(f"tune.{name} lists no choices", f"give some, e.g. tune.{name}: [8, 16, 32]")
            sample = spec[0]
        elif isinstance(spec, dict) and set(spec) >= {"low", "high"} and set(spec) <= {"low", "high", "log"}:
            if not (isinstance(spec["low"], (int, float)) and isinstance(spec["high"], (int, float)) and spec["low"] < spec["high"]):
                raise BertkitError(f"tune.{name} needs numbers low < high, got {spec['low']!r} and {spec['high']!r}",
                                   f"e.g. tune.{name}: {{low: 1.0e-5, high: 1.0e-4}}")
            if spec.get("log") and spec["low"] <= 0:
                raise BertkitError(f"tune.{name} is searched on a log scale, so low must be above 0", "raise low or set log: false")
            sample = spec["low"]
        else:
            raise BertkitError(f"tune.{name} must be a list of choices or a range {{low, high, log}}, got {spec!r}",
                               f"e.g. tune.{name}: [8, 16, 32] or tune.{name}: {{low: 1, high: 5}}")
        try:  # the key must be one a recipe takes, with a value of its type
            recipe_mod.from_dict(recipe_mod.apply_overrides(tree, [f"{key}={sample}"]))
        except BertkitError as exc:
            raise BertkitError(f"tune.{name} cannot be searched: {exc.message.splitlines()[-1].strip(' -')}",
                               "name a recipe key (learning_rate, training.num_train_epochs, max_length, ...)") from exc
        space[key] = spec
    return space


def suggest(trial: Any, key: str, spec: Any) -> Any:
    if isinstance(spec, list):
        return trial.suggest_categorical(key, spec)
    if isinstance(spec["low"], int) and isinstance(spec["high"], int) and not isinstance(spec["low"], bool):
        return trial.suggest_int(key, spec["low"], spec["high"], log=bool(spec.get("log")))
    return trial.suggest_float(key, float(spec["low"]), float(spec["high"]), log=bool(spec.get("log")))


def _trial_tree(tree: dict[str, Any], values: dict[str, Any], output_dir: Path) -> dict[str, Any]:
    """The trial's recipe: the values, its own output directory, validation held out, no test split."""
    data = dict(tree.get("data") or {})
    data["test"] = None
    if not data.get("validation") and not data.get("validation_size"):
        data["validation_size"] = 0.1
    out = recipe_mod.apply_overrides({**tree, "data": data, "output_dir": str(output_dir)},
                                     [f"{k}={v}" for k, v in values.items()])
    out.pop("tune", None)
    return out


def _pruning(trial: Any, metric: str) -> Any:
    """A Trainer callback: report each evaluation's metric to the trial; stop a trial Optuna prunes.
    (Built on call, so that importing this module does not import transformers.)"""
    import optuna
    from transformers import TrainerCallback

    class Pruning(TrainerCallback):
        def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None, **kw: Any) -> None:
            value = (metrics or {}).get(f"eval_{metric}", (metrics or {}).get(metric))
            if value is None:
                return
            trial.report(float(value), step=int(round(state.epoch or 0)))
            if trial.should_prune():
                raise optuna.TrialPruned(f"epoch {state.epoch:.0f}: {metric} {value:.4f} below the median")

    return Pruning()


def run(recipe: recipe_mod.Recipe, *, trials: int, timeout: float | None, storage: str | None,
        study_name: str | None, grace: int = 60) -> dict[str, Any]:
    """Search, write ``OUTPUT_DIR/tune/``; return the best trial's number, value and values.

    ``trials`` is the study's total, across all workers sharing it: a worker starts a trial while fewer
    than ``trials`` are finished (COMPLETE or PRUNED) or running, and ends once ``trials`` are finished,
    waiting for the other workers' last trials (one of them may fail, and its slot is run again)."""
    import optuna

    from bertkit import study as study_mod
    from bertkit import tasks, train

    if trials < 1:
        raise BertkitError(f"--trials {trials}: a search needs at least one trial", "e.g. --trials 20")
    if grace < 2:
        raise BertkitError(f"--grace {grace}: a worker needs at least 2 seconds to show it is alive", "e.g. --grace 60 (the default)")
    tree = {**recipe.to_dict(), "tune": recipe.tune}
    space = search_space(recipe, tree)
    metric, greater = tasks.get(recipe.task).best_metric(recipe)
    folder = Path(recipe.output_dir) / "tune"
    shared = storage is not None
    if not shared:
        folder.mkdir(parents=True, exist_ok=True)
        storage = f"sqlite:///{(folder / 'study.db').resolve()}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def on_stale(study: Any, trial: Any) -> None:  # a trial whose worker died, just marked FAIL
        _remove(folder / f"trial-{trial.number}")
        console.log(f"trial {trial.number}: its worker {trial.user_attrs.get('worker', '')} sent no heartbeat for {grace} s; "
                    "marked failed, its slot runs again", always=True)

    try:
        study = optuna.create_study(study_name=study_name or "bertkit", load_if_exists=True,
                                    storage=study_mod.open_storage(storage, grace=grace, on_stale=on_stale),
                                    direction="maximize" if greater else "minimize",
                                    # workers sharing a study must not all draw the same random start
                                    sampler=optuna.samplers.TPESampler(seed=None if shared else recipe.seed),
                                    pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    except Exception as exc:  # SQLAlchemy / driver / journal errors of many kinds
        if not shared and not any(folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)
        if isinstance(exc, BertkitError):
            raise
        raise BertkitError(f"could not open the study storage {study_mod.shown(storage)}: {(str(exc).splitlines() or [repr(exc)])[0]}",
                           "give a database URL Optuna can open, e.g. --storage sqlite:///tune.db or "
                           "postgresql://user:password@host/db, or journal:///shared/study.log") from exc
    folder.mkdir(parents=True, exist_ok=True)
    if not shared:  # a killed tune left its trial RUNNING, and no other worker shares this file to finish it
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
    done = [t for t in study.trials if t.state in finished_states()]
    if done:
        console.log(f"resuming study '{study.study_name}': {len(done)} trial(s) done", always=True)

    def objective(trial: Any) -> float:
        values = {key: suggest(trial, key, spec) for key, spec in space.items()}
        output = folder / f"trial-{trial.number}"  # numbers are unique in the study: workers never share one
        trial_recipe = recipe_mod.from_dict(_trial_tree(tree, values, output), source=recipe.source)
        started = time.perf_counter()
        level = console.level()
        console.set_level("quiet")
        try:
            metrics = train.run(trial_recipe, overwrite=True, command=f"bertkit tune (trial {trial.number})",
                                callbacks=[_pruning(trial, metric)])
        except optuna.TrialPruned:
            _remove(output)
            console.log(f"trial {trial.number}: pruned after {time.perf_counter() - started:.0f} s  "
                        f"{_describe(values)}", always=True)
            raise
        finally:
            console.set_level(level)
        value = float(metrics["validation"][metric])
        trial.set_user_attr("seconds", round(time.perf_counter() - started, 1))
        console.log(f"trial {trial.number}: {metric}={value:.4f} in {time.perf_counter() - started:.0f} s  "
                    f"{_describe(values)}", always=True)
        return value

    deadline = None if timeout is None else time.monotonic() + timeout
    waiting: list[int] = []
    while deadline is None or time.monotonic() < deadline:
        study_mod.fail_stale(study)
        finished = len(study.get_trials(deepcopy=False, states=finished_states()))
        running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
        if finished >= trials:
            break
        if finished + len(running) >= trials:
            # every slot is taken by other workers' trials; wait for them, since one may still fail
            # (its worker killed) and then this worker runs that slot again
            if running != waiting:
                console.log(f"waiting for trial(s) {', '.join(map(str, running))} of other workers", always=True)
                waiting = running
            time.sleep(study_mod.heartbeat_interval(grace))
            continue
        waiting = []
        _one_trial(study, objective, trials, folder)
        _write(study, folder, tree, metric)
    _write(study, folder, tree, metric)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise BertkitError("no trial finished, so there is no best setting", "run more trials, or a longer --timeout")
    best = study.best_trial
    model = folder / f"trial-{best.number}"
    return {"trial": best.number, "metric": metric, "value": best.value, "values": best.params,
            "model": str(model) if model.is_dir() else None, "worker": best.user_attrs.get("worker"),
            "folder": str(folder), "trials": len(study.trials)}


def _one_trial(study: Any, objective: Any, trials: int, folder: Path) -> None:
    """Ask for a trial, run it under Optuna's heartbeat, tell its result, keep the best model only."""
    import gc

    import optuna

    from bertkit import study as study_mod

    state = optuna.trial.TrialState
    with warnings.catch_warnings():
        # Optuna warns on ask() when its storage has heartbeats: it expects study.optimize, which runs
        # the heartbeat thread that study_mod.heartbeat runs below
        warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
        trial = study.ask()
    trial.set_user_attr("worker", worker())
    taken = [t for t in study.get_trials(deepcopy=False, states=(*finished_states(), state.RUNNING)) if t.number < trial.number]
    if len(taken) >= trials:
        # another worker took the last slot between this worker's count and its ask: not run, and a
        # FAIL does not count towards --trials
        trial.set_user_attr("not_run", f"the study had its {trials} trials")
        study.tell(trial, state=state.FAIL)
        return
    # skip_if_finished: another worker may have marked the trial failed meanwhile (its heartbeat was
    # late), and may have deleted its directory too; then its result, or its crash, does not count
    try:
        with study_mod.heartbeat(study, trial):
            value = objective(trial)
    except optuna.TrialPruned:
        study.tell(trial, state=state.PRUNED, skip_if_finished=True)
    except Exception:
        failed_elsewhere = study._storage.get_trial(trial._trial_id).state == state.FAIL
        study.tell(trial, state=state.FAIL, skip_if_finished=True)
        if not failed_elsewhere:
            raise
    except BaseException:  # Ctrl-C, SIGTERM: this worker stops
        study.tell(trial, state=state.FAIL, skip_if_finished=True)
        raise
    else:
        study.tell(trial, value, skip_if_finished=True)
    finally:
        gc.collect()  # a trial's model and datasets go before the next one is built
    if study._storage.get_trial(trial._trial_id).state == state.FAIL:
        console.log(f"trial {trial.number}: marked failed by another worker (no heartbeat in time); it does not count",
                    always=True)
    _keep_best(study, folder)


def _describe(values: dict[str, Any]) -> str:
    return " ".join(f"{k.removeprefix('training.')}={v:.3g}" if isinstance(v, float) else f"{k.removeprefix('training.')}={v}"
                    for k, v in values.items())


def _remove(output: Path) -> None:
    from bertkit import outputs

    shutil.rmtree(output, ignore_errors=True)
    shutil.rmtree(outputs.staging_dir(output), ignore_errors=True)


def _keep_best(study: Any, folder: Path) -> None:
    """Delete the model of every finished trial but the best. Every worker does this after each trial it
    tells, from the storage's state, so the last one to tell leaves only the best model in a shared
    folder; a running trial's directory is never touched."""
    import optuna

    state = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(state.COMPLETE,))
    best = study.best_trial.number if complete else None
    for t in study.get_trials(deepcopy=False, states=(*finished_states(), state.FAIL)):
        if t.number != best:
            _remove(folder / f"trial-{t.number}")


def _write(study: Any, folder: Path, tree: dict[str, Any], metric: str) -> None:
    """trials.csv, best.yaml and search.png from the study as it stands in the storage (every worker's
    trials). Each file is written whole and renamed into place: workers sharing the folder write them
    at once, and the last to write leaves the full picture."""
    import optuna

    trials = study.get_trials(deepcopy=False)
    names = sorted({k for t in trials for k in t.params})

    def table(path: Path) -> None:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["number", "state", "value", *names, "seconds"])
            for t in trials:
                seconds = t.user_attrs.get("seconds")
                if seconds is None and t.datetime_start and t.datetime_complete:
                    seconds = round((t.datetime_complete - t.datetime_start).total_seconds(), 1)
                writer.writerow([t.number, t.state.name, t.value, *(t.params.get(n) for n in names), seconds])

    _replace(folder / "trials.csv", table)
    complete = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return
    best = study.best_trial
    chosen = _trial_tree(tree, best.params, Path(tree["output_dir"]))
    chosen["data"] = {**chosen["data"], "test": (tree.get("data") or {}).get("test")}
    notes = [f"the best of {len(trials)} trials of bertkit tune (trial {best.number}: validation {metric} "
             f"{best.value:.4f}); rerun with: bertkit finetune {folder / 'best.yaml'}"]
    _replace(folder / "best.yaml", lambda path: recipe_mod.save(recipe_mod.from_dict(chosen), path, notes=notes))
    from bertkit.plotting import plot_search

    _replace(folder / "search.png", lambda path: plot_search([(t.number, t.value) for t in complete], metric,
                                                             study.direction.name == "MAXIMIZE", path))


def _replace(path: Path, write: Any) -> None:
    """``write(temporary)`` beside ``path``, then rename it over ``path`` (atomic on one file system)."""
    temporary = path.with_name(f".{path.stem}.{worker().replace(':', '-')}.tmp{path.suffix}")  # the suffix picks the image format
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
