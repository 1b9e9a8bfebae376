"""A study's Optuna storage, opened from its URL: a missing database driver is named with the
`pip install` that brings it, and processes that start together on an empty database all get
the storage, whichever of them creates Optuna's tables.

Creating the tables is not safe to do from several processes at once: on PostgreSQL the ones
that lose the race fail on a name the winner took (a duplicate key in the catalog, or a table
that already exists), on MySQL likewise. Those errors are retried, a few times and after a
random pause, and by then the tables are there.
"""

from __future__ import annotations

import random
import time
from typing import Any

from dlcli.errors import StudyError

SCHEMA_ATTEMPTS = 6  # tries at opening a storage whose tables other processes are creating
PAUSE_SECONDS = 0.1  # the first pause is up to this long; each next one, up to twice as long
DRIVERS = {  # the module SQLAlchemy 2 imports for a URL's dialect -> what `pip install` takes
    "psycopg": "'psycopg[binary]'",  # postgresql:// and postgresql+psycopg://
    "psycopg2": "psycopg2-binary",  # postgresql+psycopg2://
    "MySQLdb": "mysqlclient",  # mysql:// and mysql+mysqldb://
    "pymysql": "pymysql",  # mysql+pymysql://
}
# A name another process has just taken: PostgreSQL's unique_violation (its catalog's, or a row's),
# duplicate_table and duplicate_object; MySQL's "table exists" and "duplicate entry".
POSTGRES_TAKEN = {"23505", "42P07", "42710"}
MYSQL_TAKEN = {1050, 1062}


def open_storage(url: str, *, heartbeat_interval: int, grace_period: int) -> Any:
    """The Optuna storage at `url`, its tables created if the database has none.

    Args:
        url: a SQLAlchemy database URL, e.g. `postgresql://user:pass@db-host/dlcli`.
        heartbeat_interval: seconds between a running trial's heartbeats.
        grace_period: seconds without a heartbeat after which a running trial is failed.

    Returns:
        An `optuna.storages.RDBStorage`.

    Raises:
        StudyError: no driver for the URL, a malformed URL, a server that cannot be reached or
            refuses the user, or tables still in the way after `SCHEMA_ATTEMPTS` tries.

    Example:
        open_storage("sqlite:///study.db", heartbeat_interval=10, grace_period=30)
    """
    import optuna

    sqlite = url.startswith("sqlite")
    attempt = 1
    while True:
        try:
            return optuna.storages.RDBStorage(
                url,
                engine_kwargs={"connect_args": {"timeout": 60}} if sqlite else {},
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
            )
        except Exception as error:  # SQLAlchemy's: malformed URL, no driver, unreachable, race
            if attempt == SCHEMA_ATTEMPTS or not name_taken(error):
                raise cannot_open(url, error) from None
        time.sleep(random.uniform(0, PAUSE_SECONDS * 2 ** (attempt - 1)))  # apart, not in step
        attempt += 1


def name_taken(error: BaseException) -> bool:
    """Whether `error` (a SQLAlchemy error) says that another process has just created a table,
    an index, a type or a row of the same name: the race of creating the tables together.

    Example:
        >>> name_taken(ValueError("no"))
        False
    """
    import sqlalchemy.exc

    if not isinstance(error, sqlalchemy.exc.DBAPIError):
        return False
    driver_error = error.orig
    code = getattr(driver_error, "sqlstate", None) or getattr(driver_error, "pgcode", None)
    if code is not None:  # psycopg (sqlstate) or psycopg2 (pgcode)
        return code in POSTGRES_TAKEN
    arguments: tuple[object, ...] = getattr(driver_error, "args", ())
    return bool(arguments) and arguments[0] in MYSQL_TAKEN  # mysqlclient, pymysql: (code, text)


def hide_password(url: str) -> str:
    """The URL as it can be shown, its password as `***`.

    Example:
        >>> hide_password("postgresql://dl:secret@db-host/dlcli")
        'postgresql://dl:***@db-host/dlcli'
        >>> hide_password("sqlite:///runs/study.db")
        'sqlite:///runs/study.db'
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return url
    return url if parsed.password is None else parsed.render_as_string(hide_password=True)


def cannot_open(url: str, error: BaseException) -> StudyError:
    """The one line for a storage that `error` kept from opening: what went wrong, and for a
    missing driver, its module and the `pip install` that brings it."""
    return StudyError(
        f"--storage {hide_password(url)}: cannot open the study storage" + _reason(error, url)
    )


def _reason(error: BaseException, url: str) -> str:
    cause: BaseException | None = error
    while isinstance(cause, ImportError) and isinstance(cause.__cause__, ImportError):
        cause = cause.__cause__  # Optuna's "Failed to import DB access module", from SQLAlchemy's
    if isinstance(cause, ModuleNotFoundError) and cause.name:
        module = cause.name.split(".")[0]
        package = DRIVERS.get(module, f"the package that provides {module}")
        scheme = url.split("://")[0]
        return (
            f" (No module named '{module}', the driver of {scheme}:// URLs): pip install {package}"
        )
    assert cause is not None
    return f" ({' '.join(str(cause).splitlines()[0].split())})"
