"""`dlcli tune --storage postgresql://...` as the README's several-machines recipe has it: the
driver the README installs is the one SQLAlchemy loads, a missing driver is named with the
`pip install` that fixes it, and a real PostgreSQL server (initdb in a temporary folder, started
on a free 127.0.0.1 port, stopped at the end) takes processes that start together on an empty
database. Without PostgreSQL's programs the server tests skip; `.ci/run` installs them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .helpers import REPO, SEARCH, dlcli_command, run_cli, write_search_spec

PASSWORD = "dl-secret"
TINY = SEARCH.replace("epochs: 3", "epochs: 1")


def _postgres_programs() -> Path | None:
    """The folder of initdb and pg_ctl: on PATH, or Debian's /usr/lib/postgresql/VERSION/bin."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    folders = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parts[-3]) if path.parts[-3].isdigit() else 0,
    )
    return folders[-1].parent if folders else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Postgres:
    """A PostgreSQL server of this test module, listening on 127.0.0.1:`port`."""

    port: int
    seconds: float  # initdb and start
    log: Path  # the server's log: the statements it refused

    def url(self, database: str, *, password: str = PASSWORD, port: int | None = None) -> str:
        return f"postgresql://dl:{password}@127.0.0.1:{port or self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(self.url(database), autocommit=True)

    def new_database(self, name: str) -> str:
        """An empty database `name`; its URL."""
        with self.connect() as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """initdb in a temporary folder, then `pg_ctl start` on a free port; stopped and removed
    at the end, whatever the tests did. initdb and postgres refuse to run as root, so as root
    (CI) they run as `nobody`, in a folder of its own under the system's temporary folder
    (pytest's own is closed to other users)."""
    programs = _postgres_programs()
    if programs is None:
        pytest.skip("no PostgreSQL server programs (initdb) on PATH or in /usr/lib/postgresql")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("no psycopg (the `dev` extra installs it): pip install 'psycopg[binary]'")
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="dlcli-postgres-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "nobody", "--"]
        shutil.chown(folder, user="nobody")
    (folder / "password").write_text(PASSWORD + "\n")
    data, port = folder / "data", _free_port()
    pgdata = ["--pgdata", str(data)]
    started = time.perf_counter()

    def server_program(name: str, *arguments: str) -> None:
        command = [*as_user, str(programs / name), *arguments]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr or done.stdout}"

    try:
        flags = "--username dl --auth-host scram-sha-256 --auth-local trust --encoding UTF8"
        flags += " --no-sync --no-instructions"
        password = str(folder / "password")
        server_program("initdb", *pgdata, "--pwfile", password, *flags.split())
        options = (
            f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off"
        )
        log = folder / "server.log"
        server_program("pg_ctl", "start", "--wait", *pgdata, "--log", str(log), "-o", options)
        seconds = time.perf_counter() - started
        yield Postgres(port=port, seconds=seconds, log=log)
    finally:
        try:
            if (data / "postmaster.pid").exists():
                server_program("pg_ctl", "stop", "--mode", "immediate", *pgdata)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def trials_in(postgres: Postgres, database: str) -> list[tuple[int, str]]:
    """(number, state) of every trial in the database, read with psycopg: the storage itself."""
    with postgres.connect(database) as connection:
        query = "SELECT number, state FROM trials ORDER BY number"
        return [(number, str(state)) for number, state in connection.execute(query).fetchall()]


def _recipe() -> tuple[str, str]:
    """The README's several-machines recipe: what it installs, and its --storage URL."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Hyperparameter search\n")[1].split("\n## ")[0]
    install = re.search(r"`pip install ([^`]+)`", section)
    url = re.search(r"--storage (postgresql\S*)", section)
    assert install and url, section
    return install[1], url[1]


def _distributions(requirement: str) -> set[str]:
    """The distributions `pip install REQUIREMENT` brings for a driver: the named one, or for
    dlcli with extras, the requirements of those extras (as installed from pyproject.toml)."""
    name, _, extras = requirement.strip("'\"").partition("[")
    if name != "dlcli":
        return {name.lower()}
    wanted = {f'extra == "{extra.strip()}"' for extra in extras.rstrip("]").split(",")}
    listed = importlib.metadata.requires("dlcli") or []
    chosen = [item for item in listed if item.partition(";")[2].strip() in wanted]
    return {re.split(r"[\[<>=!~; ]", item, maxsplit=1)[0].lower() for item in chosen}


def test_the_readme_installs_the_driver_that_its_postgresql_url_loads() -> None:
    from sqlalchemy.engine import make_url

    install, url = _recipe()
    module = make_url(url).get_dialect().driver  # the module SQLAlchemy imports for the URL
    providers = importlib.metadata.packages_distributions().get(module, [])
    assert _distributions(install) & {name.lower() for name in providers}, (
        f"the README installs {install}, but {url} loads the module {module}, which comes "
        f"from {providers or 'a package not installed here'}"
    )


@pytest.mark.parametrize(
    ("url", "module", "install"),
    [
        ("postgresql+psycopg2://dl:secret@127.0.0.1:9/dlcli", "psycopg2", "psycopg2-binary"),
        ("mysql://dl:secret@127.0.0.1:9/dlcli", "MySQLdb", "mysqlclient"),
    ],
    ids=["psycopg2", "mysqlclient"],
)
def test_a_missing_driver_is_named_with_the_pip_install_that_fixes_it(
    url: str, module: str, install: str, tmp_path: Path, user_env: dict[str, str]
) -> None:
    if importlib.util.find_spec(module) is not None:
        pytest.skip(f"{module} is installed here")
    write_search_spec(tmp_path, TINY)
    result = run_cli(["tune", "tiny.yaml", "--storage", url], user_env, tmp_path)
    assert result.returncode == 13, result.stderr
    scheme = url.split("://")[0]
    assert result.stderr.strip() == (
        f"Error: --storage {url.replace(':secret@', ':***@')}: cannot open the study storage "
        f"(No module named '{module}', the driver of {scheme}:// URLs): pip install {install}"
    )


def _wait_for_lock_waiters(
    postgres: Postgres, database: str, count: int, processes: list[subprocess.Popen[str]]
) -> None:
    """Until `count` sessions of `database` wait for a lock (or a process has ended)."""
    query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
    deadline = time.monotonic() + 120
    with postgres.connect() as connection:
        while time.monotonic() < deadline:
            if connection.execute(query, (database,)).fetchone()[0] >= count:
                return
            if any(process.poll() is not None for process in processes):
                return  # it ended before reaching the schema: its output says why
            time.sleep(0.05)
    pytest.fail(f"{count} processes never waited together on the schema of {database}")


def test_machines_that_start_together_on_an_empty_database_all_join_the_study(
    postgres: Postgres, tmp_path: Path, user_env: dict[str, str]
) -> None:
    assert postgres.seconds < 60  # initdb and start: seconds, not minutes
    url = postgres.new_database("together")
    machines = [tmp_path / "machine-a", tmp_path / "machine-b"]
    for machine in machines:
        write_search_spec(machine, TINY)
    command = [*dlcli_command(), "tune", "tiny.yaml", "--trials", "3", "--json"]
    command += ["--storage", url, "--study", "iris-pg"]
    # The gate holds Optuna's first table, uncommitted, until both processes wait on it: both
    # then create the schema at the same moment, every run, as machines started together do.
    with postgres.connect("together") as gate:
        gate.execute("BEGIN")
        gate.execute("CREATE TABLE studies (study_id integer)")
        processes = [
            subprocess.Popen(
                command,
                cwd=machine,
                env=user_env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            for machine in machines
        ]
        _wait_for_lock_waiters(postgres, "together", 2, processes)
        gate.execute("ROLLBACK")
    outputs = [process.communicate(timeout=300) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    # the race happened: the server refused one process's table, and that process went on
    assert "pg_type_typname_nsp_index" in postgres.log.read_text(encoding="utf-8")
    ran = [set(json.loads(stdout)["ran"]) for stdout, _ in outputs]
    numbers = [number for number, _ in trials_in(postgres, "together")]
    # no trial lost or run twice: each process ran some, the union is the study, each once
    assert all(ran) and not ran[0] & ran[1] and ran[0] | ran[1] == set(numbers)
    assert numbers == list(range(len(numbers)))
    assert 3 <= len(numbers) <= 4  # each process checks the count before it starts a trial

    more = len(numbers) + 1
    arguments = ["tune", "tiny.yaml", "--trials", str(more), "--storage", url, "--study", "iris-pg"]
    result = run_cli(arguments, user_env, machines[1])
    assert result.returncode == 0, result.stderr
    assert f"continued ({len(numbers)} trials so far)" in result.stderr
    assert [number for number, _ in trials_in(postgres, "together")] == list(range(more))


@pytest.mark.parametrize(
    ("mistake", "reason"),
    [
        ("wrong password", 'FATAL: password authentication failed for user "dl"'),
        ("unreachable port", "Connection refused"),
    ],
    ids=["wrong password", "unreachable port"],
)
def test_a_server_that_refuses_the_storage_is_one_line(
    mistake: str, reason: str, postgres: Postgres, tmp_path: Path, user_env: dict[str, str]
) -> None:
    database, port = mistake.replace(" ", "_"), _free_port()
    postgres.new_database(database)
    url = {
        "wrong password": postgres.url(database, password="wrong"),
        "unreachable port": postgres.url(database, port=port),
    }[mistake]
    write_search_spec(tmp_path, TINY)
    arguments = ["tune", "tiny.yaml", "--storage", url, "--study", "iris-pg"]
    result = run_cli(arguments, user_env, tmp_path)
    assert result.returncode == 13, result.stderr
    shown = re.sub(r":[^:@]*@", ":***@", url)  # the password is not shown
    used = port if mistake == "unreachable port" else postgres.port
    assert result.stderr.strip() == (
        f"Error: --storage {shown}: cannot open the study storage ((psycopg.OperationalError) "
        f'connection failed: connection to server at "127.0.0.1", port {used} failed: {reason})'
    )
    assert not list(tmp_path.glob("runs/*/trial-*"))
