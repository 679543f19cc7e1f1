"""Optuna study storage chosen by URL: a journal file on the local data plane, or Postgres on a cluster.

Accepted ``url`` forms (see :data:`ACCEPTED_FORMS`):

- ``""``: a journal file at ``<local data plane root>/optuna/journal.log`` (the embedded default);
- ``journal:///abs/path.log`` or a plain path ending ``.log``: a journal file there;
- ``sqlite:///path.db``: Optuna's RDB storage on SQLite (one machine, few writers);
- ``postgresql://...`` / ``postgresql+psycopg2://...``: RDB storage on Postgres with heartbeats, for
  clusters. ``postgresql://`` is rewritten to ``postgresql+psycopg2://`` because SQLAlchemy 2.1 maps the
  bare scheme to psycopg 3, which is not installed.

Heartbeats only cover trials run under ``Study.optimize``. The hpo driver uses ask/tell, so it records
itself as each trial's owner (:func:`claim_trial`); when a study is opened again it fails and re-enqueues
the trials whose owner has exited (:func:`trial_owner_alive`) or whose Dagster run has ended
(``training.hpo.recover_orphaned_trials``).
"""

from __future__ import annotations

import os
import shlex
import socket
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.exceptions import ExperimentalWarning
from optuna.storages import (
    BaseStorage,
    JournalStorage,
    RDBStorage,
    RetryHeartbeatStaleTrialCallback,
)
from optuna.storages.journal import JournalFileBackend
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, Trial
from pydantic import BaseModel, Field

from cluster.capacity import FINISHED_STATES

if TYPE_CHECKING:
    from stores.data_plane import DataPlane

__all__ = [
    "ACCEPTED_FORMS",
    "FINISHED_STATES",
    "OWNER_ATTR",
    "StudyStorage",
    "StudyStorageError",
    "claim_trial",
    "dashboard_hint",
    "make_storage",
    "open_study",
    "resolve_url",
    "trial_owner_alive",
]

ACCEPTED_FORMS = (
    '"" (a journal file at <local data plane root>/optuna/journal.log)',
    "journal:///absolute/path.log",
    "a plain file path ending in .log (a journal file)",
    "sqlite:///path/to/file.db",
    "postgresql://user:password@host:5432/dbname (or postgresql+psycopg2://...)",
)
JOURNAL_PARTS = ("optuna", "journal.log")
# System attribute naming the process that asked a trial (ask/tell drivers).
OWNER_ATTR = "kumo:owner"
_POSTGRES_PREFIXES = ("postgresql+psycopg2://", "postgresql://", "postgres://")


class StudyStorageError(ValueError):
    """A study storage URL (or the data plane it depends on) that cannot be used."""


def _data_plane_root(data_plane: DataPlane | str | Path | None) -> str | None:
    if data_plane is None:
        return None
    return str(getattr(data_plane, "root", data_plane))


def resolve_url(url: str, data_plane: DataPlane | str | Path | None = None) -> str:
    """The canonical URL: ``journal:///abs.log``, ``sqlite:///...`` or ``postgresql+psycopg2://...``.

    ``data_plane`` (a :class:`DataPlane` or its root) is needed only when ``url`` is empty.
    """
    url = url.strip()
    if not url:
        root = _data_plane_root(data_plane)
        if root is None:
            raise StudyStorageError(
                "StudyStorage.url is empty and no data plane was given: pass the data plane (its journal "
                "file is <root>/optuna/journal.log) or set a storage URL"
            )
        if "://" in root:
            raise StudyStorageError(
                f"StudyStorage.url is empty but the data plane is remote ({root}): an Optuna journal file "
                "cannot live on object storage. Set StudyStorage.url to a Postgres URL "
                "(postgresql://user:password@host:5432/dbname) for clusters"
            )
        path = Path(root).expanduser().resolve().joinpath(*JOURNAL_PARTS)
        return f"journal://{path}"
    if url.startswith("journal://"):
        path = Path(url.removeprefix("journal://")).expanduser()
        if not path.is_absolute():
            raise StudyStorageError(
                f"journal URL {url!r} must name an absolute path (journal:///abs/path.log); "
                f"accepted forms: {'; '.join(ACCEPTED_FORMS)}"
            )
        return f"journal://{path.resolve()}"
    if url.startswith("sqlite://"):
        return url
    for prefix in _POSTGRES_PREFIXES:
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url.removeprefix(prefix)
    if "://" not in url and url.endswith(".log"):
        return f"journal://{Path(url).expanduser().resolve()}"
    raise StudyStorageError(
        f"unsupported Optuna storage URL {url!r}; accepted forms: {'; '.join(ACCEPTED_FORMS)}"
    )


def make_storage(
    url: str,
    data_plane: DataPlane | str | Path | None = None,
    *,
    heartbeat_interval: int = 60,
    grace_period: int = 180,
    max_retry: int | None = 3,
) -> BaseStorage:
    """Build the Optuna storage for ``url`` (see :data:`ACCEPTED_FORMS`).

    On Postgres, trials run under ``Study.optimize`` send a heartbeat every ``heartbeat_interval`` seconds;
    one silent for ``grace_period`` seconds is failed by the next ``optuna.storages.fail_stale_trials`` and retried
    as a new WAITING trial with the same parameters, at most ``max_retry`` times (None: without limit).
    """
    resolved = resolve_url(url, data_plane)
    if resolved.startswith("journal://"):
        path = Path(resolved.removeprefix("journal://"))
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    if resolved.startswith("sqlite://"):
        return RDBStorage(resolved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)  # heartbeat_interval is "experimental"
        return RDBStorage(
            resolved,
            engine_kwargs={"pool_pre_ping": True},  # survive Postgres restarts and idle-connection reaping
            heartbeat_interval=heartbeat_interval,
            grace_period=grace_period,
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=max_retry),
        )


def open_study(
    storage: BaseStorage | str,
    name: str,
    direction: str | StudyDirection | Sequence[str | StudyDirection] = "minimize",
    sampler: optuna.samplers.BaseSampler | None = None,
    pruner: optuna.pruners.BasePruner | None = None,
) -> optuna.Study:
    """Load study ``name`` if it exists, else create it; refuse one stored with other directions.

    ``storage`` is a storage or a URL for :func:`make_storage`; a sequence of directions makes a
    multi-objective study.
    """
    if isinstance(storage, str):
        storage = make_storage(storage)
    directions = [direction] if isinstance(direction, str | StudyDirection) else list(direction)
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        directions=directions,
        sampler=sampler,
        pruner=pruner,
        load_if_exists=True,
    )
    wanted = [d if isinstance(d, StudyDirection) else StudyDirection[d.upper()] for d in directions]
    if study.directions != wanted:
        raise StudyStorageError(
            f"study {name!r} exists with directions {[d.name.lower() for d in study.directions]}, "
            f"not {[d.name.lower() for d in wanted]}: use another study name"
        )
    return study


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> int | None:
    """Start time of a live process in clock ticks since boot (None: gone, a zombie, or no /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces and parentheses
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _owner_alive(owner: Any) -> bool | None:
    """True/False when the owning process is on this host (and boot); None when that cannot be known."""
    if not isinstance(owner, dict) or owner.get("host") != socket.gethostname():
        return None
    if owner.get("boot_id") != _boot_id():
        return False  # the host rebooted since the trial was asked
    pid = int(owner["pid"])
    if Path("/proc/self/stat").exists():
        return _process_start(pid) == owner.get("start")
    try:  # no /proc (macOS): existence only
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def trial_owner_alive(trial: FrozenTrial) -> bool | None:
    """Whether the process that claimed ``trial`` (:func:`claim_trial`) still runs.

    None when that cannot be known from here: the trial was never claimed, or by a process on another host.
    """
    return _owner_alive(trial.system_attrs.get(OWNER_ATTR))


def claim_trial(study: optuna.Study, trial: Trial | FrozenTrial, pid: int | None = None) -> None:
    """Record process ``pid`` (default: this one) on this host as the owner that will ``tell`` ``trial``.

    :func:`trial_owner_alive` then tells whether the owner still runs, so the driver fails a claimed RUNNING
    trial as soon as its owner has exited, however young the trial is, and never one whose owner runs.
    """
    pid = os.getpid() if pid is None else pid
    owner = {"host": socket.gethostname(), "pid": pid, "boot_id": _boot_id(), "start": _process_start(pid)}
    study._storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, owner)


def dashboard_hint(url: str, data_plane: DataPlane | str | Path | None = None) -> str:
    """The shell command that opens ``optuna-dashboard`` on the same storage (password masked)."""
    resolved = resolve_url(url, data_plane)
    if resolved.startswith("journal://"):
        return f"optuna-dashboard {shlex.quote(resolved.removeprefix('journal://'))}"
    if resolved.startswith("sqlite://"):
        return f"optuna-dashboard {shlex.quote(resolved)}"
    from sqlalchemy.engine import make_url

    parsed = make_url(resolved)
    shown = parsed.render_as_string(hide_password=True)
    hint = f"optuna-dashboard {shlex.quote(shown)}"
    return hint + "  # put the real password in place of ***" if parsed.password else hint


class StudyStorage(BaseModel):
    """Where Optuna studies live: empty ``url`` means a journal file on the (local) data plane."""

    url: str = Field(
        default="",
        description="Empty (journal file under the data plane), journal:///abs.log, a path ending .log, "
        "sqlite:///file.db, or postgresql://user:password@host:5432/db for clusters.",
    )
    heartbeat_interval: int = Field(
        default=60, description="Postgres only: seconds between heartbeats of a trial under Study.optimize."
    )
    grace_period: int = Field(
        default=180, description="Postgres only: seconds without a heartbeat before a trial counts as dead."
    )
    max_retry: int | None = Field(
        default=3, description="Postgres only: retries of a trial whose heartbeat stopped (None: no limit)."
    )

    def resolved_url(self, data_plane: DataPlane | str | Path | None = None) -> str:
        """The canonical URL, concrete enough to hand to trial processes (see :func:`resolve_url`)."""
        return resolve_url(self.url, data_plane)

    def get_storage(self, data_plane: DataPlane | str | Path | None = None) -> BaseStorage:
        """The Optuna storage; ``data_plane`` (a DataPlane or its root) is needed when ``url`` is empty."""
        return make_storage(
            self.url,
            data_plane,
            heartbeat_interval=self.heartbeat_interval,
            grace_period=self.grace_period,
            max_retry=self.max_retry,
        )

    def open_study(
        self,
        name: str,
        direction: str | Sequence[str] = "minimize",
        data_plane: DataPlane | str | Path | None = None,
        sampler: optuna.samplers.BaseSampler | None = None,
        pruner: optuna.pruners.BasePruner | None = None,
    ) -> optuna.Study:
        """Load or create study ``name`` on this storage (see :func:`open_study`)."""
        return open_study(self.get_storage(data_plane), name, direction, sampler, pruner)

    def dashboard_hint(self, data_plane: DataPlane | str | Path | None = None) -> str:
        """How to point ``optuna-dashboard`` at this storage."""
        return dashboard_hint(self.url, data_plane)
