"""Where a ``bertkit tune`` study lives, and how workers sharing it notice one that died.

``open_storage`` turns a storage URL into an Optuna storage: ``journal:///path/file.log`` is Optuna's
journal file (several machines on a shared file system, no server); any other URL is a database
(``postgresql://``, ``mysql://``, ``sqlite://``; tune's own default is ``sqlite:///OUTPUT_DIR/tune/study.db``)
through Optuna's RDB storage. A database server that is down or unreachable is reported in one line
within ``CONNECT_TIMEOUT`` seconds, not after the operating system's TCP timeout (minutes).

Every storage gets Optuna's heartbeat: a running trial records a beat every ``grace / 4`` seconds, and
a RUNNING trial with no beat for ``grace`` seconds belongs to a worker that was killed (or lost its
machine); ``fail_stale`` marks it FAIL, so that a live worker runs its slot again. Optuna implements
the heartbeat for its database storage only; ``HeartbeatJournalStorage`` adds it to the journal through
the same interface, and both add a check Optuna lacks (``_classes``). What this does not do: retry the
dead trial's values (TPE proposes new ones), or run several trials in one process.
"""

from __future__ import annotations

import contextlib
import functools
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bertkit.errors import BertkitError

JOURNAL = "journal://"
CONNECT_TIMEOUT = 10  # seconds; a database server that does not answer by then is reported as down
BEAT = "bertkit:heartbeat"  # the journal's heartbeat: a trial system attribute that changes each beat


def heartbeat_interval(grace: int) -> int:
    """Seconds between beats: four beats per grace period, so one late beat is no death."""
    return max(1, grace // 4)


def shown(url: str) -> str:
    """The URL as it may be printed: a database password is masked."""
    if url.startswith(JOURNAL):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: it is reported as it was given
        return url


def open_storage(url: str, *, grace: int, on_stale: Callable[[Any, Any], None]) -> Any:
    """An Optuna storage for ``url`` with heartbeats every ``heartbeat_interval(grace)`` seconds;
    ``on_stale(study, trial)`` is called for each trial ``fail_stale`` marks failed."""
    if url.startswith(JOURNAL):
        return _journal(url, grace, on_stale)
    return _database(url, grace, on_stale)


def _journal(url: str, grace: int, on_stale: Callable[[Any, Any], None]) -> Any:
    from optuna.storages.journal import JournalFileBackend

    path = Path(url[len(JOURNAL):])  # journal:///abs/study.log -> /abs/study.log; journal://study.log is relative
    if not path.name:
        raise BertkitError(f"--storage {url} names no journal file", "e.g. --storage journal:///shared/tune/study.log")
    if not path.parent.is_dir():
        raise BertkitError(f"the journal file's folder {path.parent} does not exist (--storage {url})",
                           "create it (on a file system every worker mounts), or name another file")
    try:
        return _classes()[0](JournalFileBackend(str(path)), grace=grace, on_stale=on_stale)
    except (OSError, ValueError) as exc:  # unreadable, or not an Optuna journal
        raise BertkitError(f"could not open the study storage {url}: {exc}",
                           "give a journal file Optuna wrote, or a new file name") from exc


def _database(url: str, grace: int, on_stale: Callable[[Any, Any], None]) -> Any:
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    hint = ("give a database URL Optuna can open, e.g. --storage sqlite:///tune.db or "
            "postgresql://user:password@host/db (pip install 'bertkit[tune-db]'), or journal:///shared/study.log")
    try:
        parsed = make_url(url)
    except Exception as exc:  # not a URL at all
        raise BertkitError(f"could not open the study storage {url}: {exc}", hint) from exc
    backend, given = parsed.get_backend_name(), shown(url)
    if parsed.drivername == "postgresql":  # the tune-db extra's driver, whichever SQLAlchemy defaults to
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    engine_kwargs: dict[str, Any] = {}
    if backend in ("postgresql", "mysql", "mariadb"):
        # fail fast on a server that is down, and re-check pooled connections after an hour-long
        # trial (servers and firewalls drop idle connections; Optuna would write into a dead one)
        engine_kwargs = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT}, "pool_pre_ping": True}
    server = backend != "sqlite"
    try:
        return _rdb(url, engine_kwargs, grace, on_stale)
    except ImportError as exc:
        raise BertkitError(f"the database driver for {given} is not installed",
                           "pip install 'bertkit[tune-db]' (PostgreSQL), or the driver your database needs") from exc
    except sqlalchemy.exc.OperationalError as exc:
        reason = (str(getattr(exc, "orig", None) or exc).strip().splitlines() or [repr(exc)])[0]
        raise BertkitError(f"could not reach the study storage {given}: {reason}",
                           "start the database server, or check the host, port, user and password in --storage" if server
                           else "check that the database file's folder exists and is writable") from exc
    except Exception as exc:  # an unknown dialect, a malformed URL, ...
        raise BertkitError(f"could not open the study storage {given}: {(str(exc).strip().splitlines() or [repr(exc)])[0]}",
                           hint) from exc


def _rdb(url: str, engine_kwargs: dict[str, Any], grace: int, on_stale: Callable[[Any, Any], None]) -> Any:
    import optuna
    import sqlalchemy.exc

    def connect() -> Any:
        with warnings.catch_warnings():  # heartbeat_interval is "experimental" in Optuna since 2.9
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return _classes()[1](url, engine_kwargs=engine_kwargs, grace=grace, on_stale=on_stale)

    for _ in range(2):
        try:
            return connect()
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # workers started together on an empty database race to create Optuna's tables, and the
            # loser's CREATE fails on the winner's table; the tables exist now, so it opens next time
            time.sleep(1.0)
    return connect()


@functools.cache
def _classes() -> tuple[type, type]:
    """``HeartbeatJournalStorage`` and ``HeartbeatRDBStorage``, built on first use so that importing this
    module imports no Optuna.

    Both count beats in a system attribute of the trial (``BEAT``), and call a trial stale when its count
    has not changed for ``grace`` seconds of *this* process's clock (machines sharing a study need not
    agree on the time of day). That also catches a trial whose worker died between asking for it and
    its first beat, which Optuna's own database check skips (it looks only at trials that have beaten),
    and which would leave the other workers waiting for it forever. The database storage keeps Optuna's
    own heartbeat and check besides."""
    # BaseHeartbeat is the interface study.optimize and fail_stale_trials use; optuna.storages does not
    # export it, so it comes from its module (tests/test_tune_storage.py runs both storages' heartbeats)
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.storages import RDBStorage
    from optuna.storages._heartbeat import BaseHeartbeat
    from optuna.storages.journal import JournalStorage
    from optuna.trial import TrialState

    class Beats:
        def _watch(self, grace: int, on_stale: Callable[[Any, Any], None]) -> None:
            self._grace = grace
            self._on_stale = on_stale
            self._sent: dict[int, int] = {}  # this process's own running trials: beats sent
            self._seen: dict[int, tuple[Any, float]] = {}  # running trials: (their count, when this process first saw it)

        def _beat(self, trial_id: int) -> None:
            self._sent[trial_id] = self._sent.get(trial_id, 0) + 1
            try:
                self.set_trial_system_attr(trial_id, BEAT, self._sent[trial_id])  # type: ignore[attr-defined]
            except UpdateFinishedTrialError:
                pass  # another worker marked it failed (a beat came too late); the worker's tell reports it

        def _silent(self, study_id: int) -> list[int]:
            now = time.monotonic()
            stale = []
            for trial in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):  # type: ignore[attr-defined]
                count = trial.system_attrs.get(BEAT)
                seen = self._seen.get(trial._trial_id)
                if seen is None or seen[0] != count:
                    self._seen[trial._trial_id] = (count, now)
                elif now - seen[1] > self._grace:
                    stale.append(trial._trial_id)
            return stale

    class HeartbeatJournalStorage(Beats, JournalStorage, BaseHeartbeat):
        """Optuna's journal storage with a heartbeat (Optuna gives it none)."""

        def __init__(self, backend: Any, *, grace: int, on_stale: Callable[[Any, Any], None]) -> None:
            super().__init__(backend)
            self._watch(grace, on_stale)

        def record_heartbeat(self, trial_id: int) -> None:
            self._beat(trial_id)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            return self._silent(study_id)

        def get_heartbeat_interval(self) -> int:
            return heartbeat_interval(self._grace)

        def get_heartbeat_stale_trial_callback(self) -> Callable[[Any, Any], None]:
            return self._on_stale

    class HeartbeatRDBStorage(Beats, RDBStorage):
        """Optuna's database storage with its heartbeat, and the count that catches a trial that never beat."""

        def __init__(self, url: str, *, engine_kwargs: dict[str, Any], grace: int, on_stale: Callable[[Any, Any], None]) -> None:
            super().__init__(url, engine_kwargs=engine_kwargs, heartbeat_interval=heartbeat_interval(grace),
                             grace_period=grace, heartbeat_stale_trial_callback=on_stale)
            self._watch(grace, on_stale)

        def record_heartbeat(self, trial_id: int) -> None:
            super().record_heartbeat(trial_id)  # Optuna's: the database server's time of the last beat
            self._beat(trial_id)

        def _get_stale_trial_ids(self, study_id: int) -> list[int]:
            return sorted(set(super()._get_stale_trial_ids(study_id)) | set(self._silent(study_id)))

    return HeartbeatJournalStorage, HeartbeatRDBStorage


def fail_stale(study: Any) -> None:
    """Mark FAIL the running trials whose worker stopped beating (Optuna's ``fail_stale_trials``)."""
    import optuna

    with warnings.catch_warnings():  # "experimental" since Optuna 2.9, and the way it is meant to be used
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


@contextlib.contextmanager
def heartbeat(study: Any, trial: Any) -> Iterator[None]:
    """Beat for ``trial`` while the block runs (Optuna's own heartbeat thread, as study.optimize uses)."""
    from optuna.storages._heartbeat import get_heartbeat_thread

    with get_heartbeat_thread(trial._trial_id, study._storage):
        yield
