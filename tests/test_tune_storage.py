"""bertkit tune shared by several workers: two ``bertkit tune`` processes on one study, in a real
PostgreSQL server (started here from the pgserver package) and in Optuna's journal file, 6 trials in
all, one worker killed mid-trial. Each trial runs in exactly one worker, the killed worker's trial ends
FAIL and the other worker runs its slot again, trials.csv and best.yaml agree with the storage, and only
the best trial's model is left. A storage that cannot be opened is one line and writes nothing."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from bertkit.cli import app

TRIALS = 6
GRACE = 6  # seconds without a heartbeat before the live worker marks the killed worker's trial failed
SPACE = "tune:\n  learning_rate: {low: 1.0e-3, high: 1.0e-2, log: true}\n"


@pytest.fixture(scope="module")
def postgres_url():
    """A PostgreSQL server of its own in a temporary folder, stopped and deleted after the module."""
    try:
        import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed (pip install -e '.[dev,tune-db]')")
    # a short folder: the server's Unix socket lives in it, and socket paths are limited to ~100 characters
    folder = tempfile.mkdtemp(prefix="bk-pg-")
    try:
        server = pgserver.get_server(folder, cleanup_mode="delete")
    except Exception as exc:  # no binaries for this platform, no user to run as, ...
        shutil.rmtree(folder, ignore_errors=True)
        pytest.skip(f"a PostgreSQL server could not be started here with pgserver: {exc}")
    yield server.get_uri()
    server.cleanup()


def storage_for(kind: str, postgres: str | None, tmp_path: Path) -> str:
    return postgres if kind == "postgresql" else f"journal://{tmp_path / 'study.log'}"


def reader(url: str):
    """Optuna's own storage for ``url``, to read the study back as any Optuna client would. Opened once,
    before the workers start (so one pool of connections serves every poll)."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith("journal://"):
        return JournalStorage(JournalFileBackend(url.removeprefix("journal://")))
    return optuna.storages.RDBStorage(url)


def load_study(storage):
    import optuna

    return optuna.load_study(study_name="shared", storage=storage)


def start_worker(recipe: Path, url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}  # two workers on a small machine: one thread each, not both fighting for all cores
    return subprocess.Popen([sys.executable, "-m", "bertkit", "tune", str(recipe), "training.num_train_epochs=1",
                             "--storage", url, "--study", "shared", "--trials", str(TRIALS), "--grace", str(GRACE)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)


def ran(log: Path) -> set[int]:
    """The trials a worker ran to the end (completed or pruned), from its own console lines."""
    return {int(n) for n in re.findall(r"^trial (\d+): (?:f1_macro=|pruned )", log.read_text(), re.M)}


@pytest.mark.parametrize("kind", ["postgresql", "journal"])
def test_two_workers_share_a_study_and_survive_a_killed_one(kind: str, tiny_recipe: Path, tmp_path: Path, request) -> None:
    import optuna

    state = optuna.trial.TrialState
    url = storage_for(kind, request.getfixturevalue("postgres_url") if kind == "postgresql" else None, tmp_path)
    recipe = tiny_recipe.with_name("tune.yaml")
    recipe.write_text(tiny_recipe.read_text() + SPACE, encoding="utf-8")
    storage = reader(url)
    logs = [tmp_path / "victim.log", tmp_path / "survivor.log"]
    victim, survivor = workers = [start_worker(recipe, url, log) for log in logs]
    try:
        # kill the victim in the middle of its second trial, once it has finished one
        started = time.monotonic()
        while True:
            assert victim.poll() is None, logs[0].read_text()
            assert time.monotonic() - started < 600, "the victim never started a second trial: " + logs[0].read_text()
            try:
                trials = load_study(storage).get_trials(deepcopy=False)
            except KeyError:  # the study is not created yet
                trials = []
            mine = [t for t in trials if t.user_attrs.get("worker", "").endswith(f":{victim.pid}")]
            running = [t.number for t in mine if t.state == state.RUNNING]
            if running and any(t.state in (state.COMPLETE, state.PRUNED) for t in mine):
                break
            time.sleep(0.2)
        victim.kill()
        victim.wait()
        killed = running[0]
        assert survivor.wait(timeout=600) == 0, logs[1].read_text()
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()

    study = load_study(storage)
    trials = study.trials
    finished = {t.number for t in trials if t.state in (state.COMPLETE, state.PRUNED)}
    assert len(finished) == TRIALS  # the study stopped at 6 trials in all
    assert trials[killed].state == state.FAIL
    survivor_log = logs[1].read_text()
    assert re.search(rf"^trial {killed}: its worker \S+:{victim.pid} sent no heartbeat", survivor_log, re.M), survivor_log
    # every finished trial ran in exactly one worker, both took part, and the survivor ran the killed slot again
    by_victim, by_survivor = ran(logs[0]), ran(logs[1])
    assert by_victim and by_survivor and not by_victim & by_survivor
    assert by_victim | by_survivor == finished
    assert max(by_survivor) > killed
    for t in trials:
        if t.number in finished:
            assert t.user_attrs["worker"].endswith(f":{victim.pid if t.number in by_victim else survivor.pid}")

    folder = tmp_path / "out" / "tune"  # one recipe, so both workers wrote into the same folder
    rows = list(csv.DictReader((folder / "trials.csv").open(encoding="utf-8")))
    assert [(int(r["number"]), r["state"]) for r in rows] == [(t.number, t.state.name) for t in trials]
    for row, t in zip(rows, trials):
        assert (row["value"] == "") == (t.value is None)
        if t.value is not None:
            assert float(row["value"]) == pytest.approx(t.value)
        if t.params:
            assert float(row["training.learning_rate"]) == pytest.approx(t.params["training.learning_rate"])
    # (the tiny model ties its trials often; the best is Optuna's best_trial either way)
    best = study.best_trial
    chosen = yaml.safe_load((folder / "best.yaml").read_text())
    assert chosen["training"]["learning_rate"] == pytest.approx(best.params["training.learning_rate"])
    assert f"the best of {len(trials)} trials of bertkit tune (trial {best.number}:" in (folder / "best.yaml").read_text()
    # only the best model is kept: no other trial's directory, no half-written one of the killed trial
    assert sorted(p.name for p in folder.glob("trial-*")) == [f"trial-{best.number}"]
    assert (folder / f"trial-{best.number}" / "metrics.json").exists()
    assert not list(folder.glob(".*.tmp*"))
    assert f"model: {folder / f'trial-{best.number}'}" in survivor_log


def test_a_trial_asked_when_the_study_is_full_is_not_run(tmp_path: Path) -> None:
    """Two workers can count a free slot at the same moment and both ask: trial numbers decide, and the
    one past --trials ends FAIL unrun (a FAIL does not count), so the study still has its N trials."""
    import optuna

    from bertkit import tune

    study = optuna.create_study()
    study.ask()
    study.tell(study.ask(), state=optuna.trial.TrialState.FAIL)  # a failed trial frees its slot
    study.ask()  # two trials of other workers, running

    def objective(trial):
        raise AssertionError("a trial past --trials ran")

    tune._one_trial(study, objective, 2, tmp_path)
    last = study.trials[-1]
    assert (last.number, last.state) == (3, optuna.trial.TrialState.FAIL)
    assert last.user_attrs["not_run"] == "the study had its 2 trials" and not last.params


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_failed(kind: str, tmp_path: Path) -> None:
    """Optuna's database check looks only at trials that have beaten: a worker killed between asking for
    a trial and its first beat would leave the others waiting for that trial forever."""
    import optuna

    from bertkit import study as study_mod

    state = optuna.trial.TrialState
    url = f"sqlite:///{tmp_path / 'study.db'}" if kind == "sqlite" else f"journal://{tmp_path / 'study.log'}"
    failed: list[int] = []
    study = optuna.create_study(storage=study_mod.open_storage(url, grace=3, on_stale=lambda _, t: failed.append(t.number)))
    study.ask()  # its worker died before the first beat
    alive = study.ask()
    with study_mod.heartbeat(study, alive):  # a beat a second
        study_mod.fail_stale(study)  # this worker sees both running
        time.sleep(4)  # more than the grace period
        study_mod.fail_stale(study)
        assert [t.state for t in study.get_trials(deepcopy=False)] == [state.FAIL, state.RUNNING]
    assert failed == [0]


def test_a_storage_that_cannot_be_opened_is_one_line_and_writes_nothing(tiny_recipe: Path, tmp_path: Path) -> None:
    runner = CliRunner()

    def tune(*args: str):
        return runner.invoke(app, ["tune", str(tiny_recipe), "--trials", "2", *args])

    # a PostgreSQL server that is down (nothing listens on port 1): the URL and the fix, the password masked
    result = tune("--storage", "postgresql://bob:secret@localhost:1/study")
    assert result.exit_code == 1, result.output
    assert "could not reach the study storage postgresql://bob:***@localhost:1/study" in result.output
    assert "hint: start the database server" in result.output
    assert "secret" not in result.output and "Traceback" not in result.output
    result = tune("--storage", f"journal://{tmp_path / 'no-such-folder' / 'study.log'}")
    assert result.exit_code == 1 and "the journal file's folder" in result.output and "does not exist" in result.output
    result = tune("--storage", "journal:///", "--grace", "1")
    assert result.exit_code == 1 and "--grace 1: a worker needs at least 2 seconds" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "no-such-folder").exists()
