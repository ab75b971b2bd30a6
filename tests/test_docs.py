"""The documentation stays true: the command reference is the one the command line writes and names every option,
every relative link of README.md and docs/ reaches a file, the README stays a front door, and every citation of
the method notes names a section that docs/method.md has."""

import re
from pathlib import Path

import typer

from lce.cli import app
from lce.cli.reference import WIDTH, commands, reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_command_reference_is_what_the_command_line_writes():
    assert (DOCS / "commands.md").read_text(encoding="utf-8") == reference(), (
        "docs/commands.md is stale: run scripts/docs (python -m lce.cli.reference > docs/commands.md)")


def test_the_command_reference_names_every_command_argument_and_option():
    page = (DOCS / "commands.md").read_text(encoding="utf-8")
    sections = dict(re.findall(r"^## `([^`]+)`\n\n```text\n(.*?)\n```$", page, flags=re.M | re.S))
    root = typer.main.get_command(app)
    found = list(commands(root, root.context_class(root, info_name="lce", terminal_width=WIDTH)))
    assert {context.command_path for _, context in found} == set(sections)
    assert {"lce ingest", "lce db url", "lce import dissect-csv", "lce control list"} <= set(sections)
    missing = []
    for command, context in found:
        text = sections[context.command_path]
        for param in command.params:
            names = param.opts + param.secondary_opts if param.param_type_name == "option" else [param.name]
            missing += [f"{context.command_path} {name}" for name in names
                        if not re.search(rf"(^|[\s,/]){re.escape(name)}(?![\w-])", text, flags=re.M)]
    assert missing == []
    assert "--random-control" in sections["lce ingest"] and "--show-password" in sections["lce db url"]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the headings of `page`: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def test_every_relative_link_of_the_readme_and_docs_reaches_a_file_and_its_heading():
    broken = []
    for page in PAGES:
        for target in LINK.findall(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target):
                continue  # a web address
            path, _, anchor = target.partition("#")
            file = (page.parent / path) if path else page
            if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert broken == []
    assert len(PAGES) >= 10  # README.md and the pages of docs/, the index among them


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150
    assert max(len(line) for line in lines) <= 200
    assert lines[2:6] == ["```bash",
                          "scripts/demo     # the main job: synthetic probe, dissect 4 small models, embed them: "
                          "out/lce.csv, out/lce.png,",
                          "                 # and the HTML report out/report/index.html",
                          "scripts/test     # the tests: installs the venv, the packages and PostgreSQL, then runs pytest"]


def test_every_citation_of_the_method_notes_names_one_of_their_sections():
    notes = (DOCS / "method.md").read_text(encoding="utf-8")
    sections = set(re.findall(r"^#+ (\d+(?:\.\d+)?)\.? ", notes, flags=re.M))
    sections |= {f"{number}.{item}" for number, body in re.findall(r"^## (\d+)\. .*?\n(.*?)(?=^## |\Z)", notes,
                                                                   flags=re.M | re.S)
                 for item in re.findall(r"^(\d+)\. ", body, flags=re.M)}
    cited, outside = [], []
    for folder in ("lce", "sql", "bench", "tests", "migrations", "scripts", "docker"):
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in (".py", ".sql", ".md", "") or not path.is_file() or "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            cited += [(path, number) for number in re.findall(r"docs/method\.md section (\d+(?:\.\d+)?)", text)]
            outside += [str(path.relative_to(ROOT)) for _ in re.findall("shared" + "/docs", text)]  # not this line
    assert outside == []
    assert len(cited) >= 30
    assert [f"{path.relative_to(ROOT)}: section {number}" for path, number in cited if number not in sections] == []
