"""Test fixtures: a real PostgreSQL server for the session, and a fresh database for each test.

The server is lce's own embedded one (started in a temporary LCE_HOME) unless LCE_TEST_ADMIN_URL names an external
server where the tests may create databases. Each test gets a database copied from a migrated template, and
LCE_DATABASE_URL pointing at it, so tests never see each other's rows.
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from lce.db import connection, migrate
from lce.db.server import EmbeddedServer

# Wide terminal for rich, so that messages the tests look for are not wrapped mid-phrase.
os.environ["COLUMNS"] = "200"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
TEMPLATE = "lce_test_template"


def shared_file(relative: str) -> Path:
    """A reference file from ../shared/data; the test skips (with the reason) only when the folder is absent."""
    path = SHARED_DATA / relative
    if not SHARED_DATA.exists():
        pytest.skip(f"{SHARED_DATA} is absent (reference data for this test)")
    assert path.exists(), f"{path} is missing from the shared data folder"
    return path


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory) -> str:
    """A libpq URL of a server where the tests may create and drop databases."""
    external = os.environ.get("LCE_TEST_ADMIN_URL")
    if external:
        yield external
        return
    home = tmp_path_factory.mktemp("lce-home")
    saved = os.environ.pop("LCE_DATABASE_URL", None)
    server = EmbeddedServer(home)
    url = server.start()
    yield make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection.dispose_all()
    server.stop()
    if saved is not None:
        os.environ["LCE_DATABASE_URL"] = saved


@pytest.fixture(scope="session")
def template(admin_url) -> str:
    """A database migrated to head, copied for every test."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    engine = connection.create(_sqlalchemy_url(admin_url, TEMPLATE))
    migrate.upgrade(engine)
    engine.dispose()
    return TEMPLATE


@contextmanager
def scratch_database(admin_url: str, monkeypatch, template: str | None = None):
    """A new database (copied from `template`, or empty) that LCE_DATABASE_URL points at; dropped afterwards."""
    name = f"lce_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy}')
    url = _sqlalchemy_url(admin_url, name)
    monkeypatch.setenv("LCE_DATABASE_URL", url)
    connection.dispose_all()
    try:
        yield url
    finally:
        connection.dispose_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database(admin_url, template, monkeypatch) -> str:
    """A fresh, migrated database for this test; LCE_DATABASE_URL points at it. Returns its SQLAlchemy URL."""
    with scratch_database(admin_url, monkeypatch, template) as url:
        yield url


@pytest.fixture
def engine(database):
    return connection.connect()


@pytest.fixture
def empty_database(admin_url, monkeypatch) -> str:
    """A database with no schema at all (for the migration tests)."""
    with scratch_database(admin_url, monkeypatch) as url:
        yield url


def _sqlalchemy_url(admin_url: str, database: str) -> str:
    url = make_url(connection.normalise_url(admin_url)).set(database=database)
    return url.render_as_string(hide_password=False)


class Cli:
    """Runs `lce ...` in-process (Typer's runner) and returns the result (exit_code, stdout, stderr)."""

    def __init__(self):
        from typer.testing import CliRunner

        from lce.cli import app

        self.app = app
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        return self.runner.invoke(self.app, [str(a) for a in args], input=input)


@pytest.fixture
def cli(database) -> Cli:
    return Cli()


PAPER_EXCLUDED = ["SimCLRV1(R)", "SimCLRV2(R)", "Random(R)", "SwAV200(R)", "SwAV400(R)", "SwAV200bs256(R)",
                  "SwAV400_2x244(R)"]


@pytest.fixture
def paper_data(cli) -> Path:
    """The authors' per-unit CSV, imported into this test's database."""
    path = shared_file("mustapha2022/models_dissect_profiles_raw.csv")
    result = cli("import", "dissect-csv", path, "--layer", "layer4")
    assert result.exit_code == 0, result.output
    return path
