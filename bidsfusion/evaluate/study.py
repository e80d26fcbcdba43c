"""Optuna storages and studies: one resumable study per (objective, modality, fold).

A study is named ``bidsfusion:<objective>:<modality>:fold-<k>:<key>``, ``key`` being
a short hash of everything its trials depend on, so a study made from other data or
another protocol is never reused. A rerun continues a study up to ``n_trials``
COMPLETE trials and leaves a finished one alone. Storages are Optuna RDB URLs
(``sqlite:///work/optuna.db``, ``postgresql://user:pw@host/db``) shared by any
number of processes, a journal file (:func:`journal_storage`, the group level's
default: ~5 ms of storage work per trial against ~45 ms for SQLite, measured with
benchmarks/evaluate.py), or ``None`` for an in-memory study.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.storages.journal._file import get_lock_file
from optuna.trial import Trial, TrialState
from sqlalchemy import event
from sqlalchemy.exc import ArgumentError

from bidsfusion.errors import OutputError, UsageError
from bidsfusion.layout import fold_name

log = logging.getLogger("bidsfusion.evaluate")

SQLITE_BUSY_TIMEOUT_S = 60
"""How long a process waits for another one's lock on a shared SQLite storage."""

_OPEN_ATTEMPTS = 3
"""Concurrent first opens of one new SQLite file race to create its tables (and
its schema version row): the loser retries."""


def journal_storage(path: Path) -> BaseStorage:
    """Optuna's append-only journal file at ``path``: resumable, shared by the processes
    of one machine or a shared file system (file locks); OutputError (73) if the file
    cannot be created. Checked under the journal's lock first: the partial last record
    of a writer that was killed is cut off (it was never read), and a journal with an
    unreadable record is set aside (renamed ``<name>.corrupt-<time>``, with a warning)
    for a new one: its studies are recomputed."""
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        backend = JournalFileBackend(str(path))
        with get_lock_file(backend._lock):
            if not _journal_intact(path):
                aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
                log.warning("%s has unreadable records; moved to %s, its studies start over",
                            path, aside)  # fmt: skip
                path.rename(aside)
                path.touch()
        return JournalStorage(JournalFileBackend(str(path)))
    except OSError as error:
        raise OutputError(
            f"cannot create the Optuna journal {path}: {error.strerror or error}; "
            "choose a writable --work-dir or an --optuna-storage URL"
        ) from None


def _journal_intact(path: Path) -> bool:
    """Whether every record of the journal parses; a partial last record is cut off."""
    content = path.read_bytes()
    complete = content[: content.rfind(b"\n") + 1]
    if len(complete) < len(content):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
    try:
        return all(isinstance(json.loads(line), dict) for line in complete.splitlines())
    except ValueError:
        return False


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (``postgresql://u:***@host/db``)."""
    return re.sub(r"(://[^:/@]*:).*@", r"\1***@", url)  # to the last @: p@ss is masked too


def open_storage(storage: str | BaseStorage | None) -> BaseStorage:
    """An Optuna storage from an RDB URL, an open storage (returned as is) or ``None``
    (in memory).

    Raises UsageError (exit 64) for a URL that is not one and OutputError (exit 73),
    showing the URL with its password masked, when the database cannot be reached or
    created (a missing driver, a wrong host, an SQLite file in a missing folder).
    """
    if storage is None:
        return InMemoryStorage()
    if isinstance(storage, BaseStorage):
        return storage
    sqlite = storage.startswith("sqlite")
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if sqlite else None
    for attempt in range(_OPEN_ATTEMPTS):
        try:
            opened = RDBStorage(storage, engine_kwargs)
            return _write_ahead(opened) if sqlite else opened
        except Exception as error:  # sqlalchemy and driver errors share no base class
            if _is_bad_url(error):
                raise UsageError(
                    f"--optuna-storage {mask_url(storage)}: not a database URL "
                    "(e.g. sqlite:///path/optuna.db or postgresql://user:password@host/db)"
                ) from None
            if attempt + 1 == _OPEN_ATTEMPTS or not _is_table_race(error):
                raise OutputError(
                    f"cannot open the Optuna storage {mask_url(storage)}: "
                    f"{_reason(error, storage)}; {_advice(error)}"
                ) from None
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _write_ahead(storage: RDBStorage) -> RDBStorage:
    """Switch an SQLite storage to a write-ahead log without an fsync per commit.

    Optuna commits ~12 times a trial; with SQLite's default rollback journal each
    commit waits for the disk (measured 15-100 ms a trial). With ``journal_mode=WAL``
    and ``synchronous=NORMAL`` a power cut may lose the last trials (a rerun redoes
    them) but never corrupts the file; every process must run on one host, which
    SQLite's locking needs anyway.
    """

    def on_connect(connection, _record) -> None:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # the connection made before the listener
    with storage.engine.connect():
        pass  # fail here, not in the first trial
    return storage


def _is_bad_url(error: Exception) -> bool:
    return isinstance(error, ArgumentError)


def _is_table_race(error: Exception) -> bool:
    """A concurrent process created the tables, or the schema version, first."""
    return any(m in str(error) for m in ("already exists", "UNIQUE constraint", "locked"))


def _reason(error: Exception, url: str) -> str:
    """The first line of ``error``, with ``url`` and its password masked in it."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return mask_url(text.replace(url, mask_url(url)))


def _advice(error: Exception) -> str:
    if isinstance(error, ImportError):
        return (
            "install the database driver the URL needs (postgresql: psycopg2-binary, "
            "mysql: PyMySQL) or pass another --optuna-storage"
        )
    return (
        "check that the database server is reachable, or that the SQLite file's folder "
        "exists and is writable, or pass another --optuna-storage"
    )


def study_name(objective: str, modality: str, fold: int, key: str) -> str:
    """``bidsfusion:<objective>:<modality>:fold-<k>:<first 12 hex of key>``."""
    return f"bidsfusion:{objective}:{modality}:{fold_name(fold)}:{key[:12]}"


def complete_trials(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The study's COMPLETE trials, in trial-number order."""
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def run_study(
    name: str,
    storage: BaseStorage,
    score: Callable[[Trial], float],
    n_trials: int,
    seed: int,
) -> optuna.Study:
    """Maximise ``score`` until the study ``name`` has ``n_trials`` COMPLETE trials.

    Loads the study when it exists (an interrupted run continues, a finished one runs
    no trial); samples with TPE seeded by ``seed``. Concurrent workers of one study
    stop together once the total reaches ``n_trials`` (a trial or two in flight may
    add to it). Trials a killed process left RUNNING do not count and are ignored.
    """
    with _quiet_optuna():
        study = optuna.create_study(
            storage=storage,
            sampler=optuna.samplers.TPESampler(seed=seed),
            study_name=name,
            direction="maximize",
            load_if_exists=True,
        )
        remaining = n_trials - len(complete_trials(study))
        if remaining > 0:
            callback = optuna.study.MaxTrialsCallback(n_trials)
            study.optimize(score, n_trials=remaining, callbacks=[callback])
    return study


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's INFO lines off (one a trial, 500 a study); its warnings stay on."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
