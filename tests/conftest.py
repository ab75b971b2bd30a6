"""Test fixtures: a real PostgreSQL server for the session, and a fresh database for each test.

The server is lce's own embedded one (started in a temporary LCE_HOME) unless LCE_TEST_ADMIN_URL names an external
server where the tests may create databases and roles. Each test gets a database owned by lce_owner, copied from
a migrated template, with LCE_DATABASE_URL (the owner) and LCE_DATABASE_READONLY_URL (lce_reader) pointing at it,
so tests never see each other's rows and run with the roles that users get.
"""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from lce.config import published_data
from lce.db import connection, migrate, roles
from lce.db.server import SUPERUSER, EmbeddedServer
from lce.published import AUTHORS_TASKS, AUTHORS_UNITS, PublishedDataMissing, PublishedFile, locate

# Wide terminal for rich, so that messages the tests look for are not wrapped mid-phrase.
os.environ["COLUMNS"] = "200"

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "lce_test_template"
PAPER_TEMPLATE = "lce_test_paper_template"
PAPER_EMBEDDING_TEMPLATE = "lce_test_paper_embedding_template"
DISSECTED_TEMPLATE = "lce_test_dissected_template"


def pytest_addoption(parser):
    # bench/gpu_check.py runs the reference-equality tests with --lce-device cuda: the same tests, on the GPU.
    parser.addoption("--lce-device", default="cpu", help="torch device of the engine's reference tests (cpu)")


@pytest.fixture(scope="session")
def device(request):
    """The device the engine's reference tests dissect on: the CPU unless --lce-device says otherwise."""
    import torch

    return torch.device(request.config.getoption("--lce-device"))


def published_file(file: PublishedFile) -> Path:
    """A published reference file (lce.published) under LCE_PUBLISHED_DATA. The test skips, with the message that
    says where to download it, only when the setting points nowhere (unset, or no such path); a folder that
    lacks the file, or a file where the folder should be, fails the test."""
    try:
        return locate(file)
    except PublishedDataMissing as missing:
        root = published_data()
        if root is None or not root.exists():
            pytest.skip(str(missing))
        pytest.fail(str(missing))


@pytest.fixture(scope="session")
def synthetic_probe(tmp_path_factory):
    """write(out, images, size, seed): the synthetic probe `lce probe synth OUT --images --size --seed` writes,
    put in `out`. Each (images, size, seed) is synthesised once a session and copied after (the same seed writes
    the same bytes), so a test may change its copy."""
    from lce.probe.synth import synthesize

    made: dict[tuple[int, int, int], Path] = {}

    def write(out: Path, images: int, size: int, seed: int) -> Path:
        key = (images, size, seed)
        if key not in made:
            made[key] = tmp_path_factory.mktemp(f"synth-{images}-{size}-{seed}") / "probe"
            synthesize(made[key], images=images, size=size, seed=seed)
        shutil.copytree(made[key], out)
        return out

    return write


@pytest.fixture(scope="session")
def admin_url(tmp_path_factory) -> str:
    """A libpq URL of a server where the tests may create and drop databases (a superuser's), with the roles
    lce_owner and lce_reader."""
    external = os.environ.get("LCE_TEST_ADMIN_URL")
    if external:
        with psycopg.connect(external, autocommit=True) as conn:
            roles.provision_embedded(conn, TEMPLATE)
        yield external
        return
    home = tmp_path_factory.mktemp("lce-home")
    saved = {name: os.environ.pop(name, None) for name in ("LCE_DATABASE_URL", "LCE_DATABASE_READONLY_URL")}
    server = EmbeddedServer(home)
    server.start()
    url = server.url(SUPERUSER, "postgres")
    yield make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    connection.dispose_all()
    server.stop()
    for name, value in saved.items():
        if value is not None:
            os.environ[name] = value


@pytest.fixture(scope="session")
def template(admin_url) -> str:
    """A database migrated to head, copied for every test."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}" OWNER {roles.OWNER}')
    engine = connection.create(_sqlalchemy_url(admin_url, TEMPLATE, roles.OWNER))
    migrate.upgrade(engine)
    migrate.grant_reader(engine, roles.READER)
    engine.dispose()
    return TEMPLATE


@contextmanager
def scratch_database(admin_url: str, monkeypatch, template: str | None = None):
    """A new database (copied from `template`, or empty) owned by lce_owner, that LCE_DATABASE_URL (as the owner)
    and LCE_DATABASE_READONLY_URL (as the reader) point at; dropped afterwards. Yields the owner's URL."""
    name = f"lce_test_{uuid.uuid4().hex[:12]}"
    copy = f' TEMPLATE "{template}"' if template else ""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"{copy} OWNER {roles.OWNER}')
    # As lce's own server makes its database (a copy does not carry the template's database rights).
    with psycopg.connect(make_url(admin_url).set(database=name).render_as_string(hide_password=False),
                         autocommit=True) as conn:
        roles.secure_database(conn, name)
    url = _sqlalchemy_url(admin_url, name, roles.OWNER)
    monkeypatch.setenv("LCE_DATABASE_URL", url)
    monkeypatch.setenv("LCE_DATABASE_READONLY_URL", _sqlalchemy_url(admin_url, name, roles.READER))
    connection.dispose_all()
    try:
        yield url
    finally:
        connection.dispose_all()
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def template_database(admin_url: str, template: str, name: str, home: Path | None = None):
    """A new template `name`, copied from `template`, that lce's commands inside the block write to (as the owner;
    LCE_HOME set to `home` when given); no connection to it is left open afterwards, so that it can be copied."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}" OWNER {roles.OWNER}')
    with psycopg.connect(make_url(admin_url).set(database=name).render_as_string(hide_password=False),
                         autocommit=True) as conn:
        roles.secure_database(conn, name)  # as for a test's database: the reader may only read
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("LCE_DATABASE_URL", _sqlalchemy_url(admin_url, name, roles.OWNER))
        monkeypatch.setenv("LCE_DATABASE_READONLY_URL", _sqlalchemy_url(admin_url, name, roles.READER))
        if home is not None:
            monkeypatch.setenv("LCE_HOME", str(home))
        connection.dispose_all()
        try:
            yield Cli()
        finally:
            connection.dispose_all()  # a template takes no copies while a connection to it is open


@pytest.fixture(scope="session")
def paper_template(admin_url, template) -> str:
    """The migrated template with the authors' per-unit CSV imported (20 runs, 40,960 units), once a session:
    the database of a test that asks for paper_data is copied from it."""
    path = published_file(AUTHORS_UNITS)
    with template_database(admin_url, template, PAPER_TEMPLATE) as cli:
        result = cli("import", "dissect-csv", path, "--layer", "layer4")
        assert result.exit_code == 0, result.output
    return PAPER_TEMPLATE


@pytest.fixture(scope="session")
def paper_embedding_folder(tmp_path_factory) -> Path:
    """Where paper_embedding_template writes the embedding's CSV (lce.csv)."""
    return tmp_path_factory.mktemp("paper-embedding")


@pytest.fixture(scope="session")
def paper_embedding_template(admin_url, paper_template, paper_embedding_folder) -> str:
    """paper_template with the paper's embedding of its 13 models (`lce embed --exclude ... --out lce.csv`) and
    the authors' task results (`lce tasks import`), once a session: the database of a test that asks for
    paper_embedding is copied from it."""
    excluded = [arg for name in PAPER_EXCLUDED for arg in ("--exclude", name)]
    with template_database(admin_url, paper_template, PAPER_EMBEDDING_TEMPLATE) as cli:
        result = cli("embed", *excluded, "--out", paper_embedding_folder / "lce.csv")
        assert result.exit_code == 0, result.output
        result = cli("tasks", "import", published_file(AUTHORS_TASKS))
        assert result.exit_code == 0, result.output
    return PAPER_EMBEDDING_TEMPLATE


@pytest.fixture(scope="session")
def dissected_folder(tmp_path_factory) -> Path:
    """Where dissected_template keeps its probe (probe/) and the LCE_HOME of its decode cache (home/)."""
    return tmp_path_factory.mktemp("dissected")


@pytest.fixture(scope="session")
def dissected_template(admin_url, template, synthetic_probe, dissected_folder) -> str:
    """The migrated template with a 10-image, 64-px synthetic probe (seed 2) registered as 'synth' and a
    random-init resnet18 (seed 1) dissected on it as 'r18' (`lce ingest r18 --probe synth --arch resnet18
    --batch-size 8 --random-init --seed 1`), once a session: the database of a test that asks for dissected_r18
    is copied from it."""
    probe = synthetic_probe(dissected_folder / "probe", images=10, size=64, seed=2)
    with template_database(admin_url, template, DISSECTED_TEMPLATE, home=dissected_folder / "home") as cli:
        added = cli("probe", "add", "synth", probe)
        assert added.exit_code == 0, added.output
        result = cli("ingest", "r18", "--probe", "synth", "--arch", "resnet18", "--batch-size", "8",
                     "--random-init", "--seed", "1")
        assert result.exit_code == 0, result.output
    return DISSECTED_TEMPLATE


# Fixtures whose rows the test's database is copied with, instead of adding them to it: the template of each,
# the one with the most rows first (paper_embedding holds paper_data's rows and more).
TEMPLATES_WITH_ROWS = {"paper_embedding": "paper_embedding_template", "paper_data": "paper_template",
                       "dissected_r18": "dissected_template"}


@pytest.fixture
def database(request, admin_url, template, monkeypatch) -> str:
    """A fresh, migrated database for this test; LCE_DATABASE_URL points at it. Returns its SQLAlchemy URL.
    A test that asks for paper_data, paper_embedding or dissected_r18 gets their rows already in it (copied from
    their template)."""
    source = next((request.getfixturevalue(rows) for fixture, rows in TEMPLATES_WITH_ROWS.items()
                   if fixture in request.fixturenames), template)
    with scratch_database(admin_url, monkeypatch, source) as url:
        yield url


@pytest.fixture
def engine(database):
    return connection.connect()


@pytest.fixture
def empty_database(admin_url, monkeypatch) -> str:
    """A database with no schema at all (for the migration tests)."""
    with scratch_database(admin_url, monkeypatch) as url:
        yield url


def _sqlalchemy_url(admin_url: str, database: str, role: str | None = None) -> str:
    url = make_url(connection.normalise_url(admin_url)).set(database=database)
    if role is not None:
        url = url.set(username=role)
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
def dissected_r18(database, dissected_folder, tmp_path, monkeypatch) -> Path:
    """A random-init resnet18 (seed 1) dissected as 'r18' on a 10-image, 64-px synthetic probe registered as
    'synth', in this test's database (copied from dissected_template); LCE_HOME is tmp_path / 'home', with the
    probe's decode cache. Returns the probe's folder, which the whole session reads: a test must not change it."""
    (tmp_path / "home").mkdir(mode=0o700)
    shutil.copytree(dissected_folder / "home" / "cache", tmp_path / "home" / "cache")
    monkeypatch.setenv("LCE_HOME", str(tmp_path / "home"))
    return dissected_folder / "probe"


@pytest.fixture
def paper_data(database) -> Path:
    """The authors' per-unit CSV, imported into this test's database (`lce import dissect-csv PATH --layer
    layer4`, done once a session in paper_template, which the database fixture copies for this test)."""
    return published_file(AUTHORS_UNITS)


@pytest.fixture
def paper_embedding(paper_data, paper_embedding_folder, tmp_path) -> Path:
    """The paper's embedding (13 models) and the task results of the 14 models in the authors' table, in this
    test's database (copied from paper_embedding_template); returns the embedding's CSV, tmp_path / 'lce.csv'."""
    return Path(shutil.copy2(paper_embedding_folder / "lce.csv", tmp_path / "lce.csv"))
