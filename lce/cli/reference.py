"""The command reference (docs/commands.md), written from the command line's own objects:

    python -m lce.cli.reference > docs/commands.md      # or scripts/docs

Every command and subcommand in `lce --help`'s order, each with its usage, its help text as written and every
argument and option as click describes it (`get_help_record`: names, type, default). Nothing is read from a
terminal: the width is fixed, so the page is the same on every machine and tests/test_docs.py can regenerate it
and compare. Typer may carry its own copy of click, so commands and parameters are told apart by click's
attributes (`list_commands`, `param_type_name`), not by class.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer

from lce.cli import app  # the package: every command module registered on the app

WIDTH = 118  # columns of the option lists: fixed, so that the page does not depend on the terminal

HEADER = """\
# Command reference

Generated from the command line itself by `python -m lce.cli.reference > docs/commands.md` (or `scripts/docs`);
do not edit by hand: tests/test_docs.py fails when this page and `lce COMMAND --help` disagree. What the commands
do, in prose: [using.md](using.md).
"""


def commands(command: Any, context: Any) -> Iterator[tuple[Any, Any]]:
    """`command` and every command below it, depth first, in the order `--help` lists them."""
    yield command, context
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, command.context_class(sub, info_name=name, parent=context,
                                                               terminal_width=WIDTH, max_content_width=WIDTH))


def section(command: Any, context: Any) -> str:
    """One command's part of the page: a heading, then a text block as `--help` says it."""
    formatter = context.make_formatter()
    formatter.write_usage(context.command_path, " ".join(command.collect_usage_pieces(context)))
    if command.help:
        lines = [line.rstrip() for line in command.help.replace("\b\n", "").splitlines()]
        formatter.write("\n" + "\n".join(f"  {line}" if line else "" for line in lines) + "\n")
    arguments = [param.get_help_record(context) for param in command.params
                 if param.param_type_name == "argument" and hasattr(param, "get_help_record")]
    options = [param.get_help_record(context) for param in command.params
               if param.param_type_name == "option" and not param.hidden]
    for title, records in (("Arguments", arguments), ("Options", options)):
        records = [record for record in records if record]
        if records:
            with formatter.section(title):
                formatter.write_dl(records)
    if hasattr(command, "list_commands"):
        subcommands = [(name, command.get_command(context, name)) for name in command.list_commands(context)]
        rows = [(name, sub.get_short_help_str(limit=WIDTH)) for name, sub in subcommands if not sub.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
    text = "\n".join(line.rstrip() for line in formatter.getvalue().splitlines())
    return f"## `{context.command_path}`\n\n```text\n{text.strip()}\n```\n"


def reference() -> str:
    """docs/commands.md as it should be, from lce.cli.app."""
    root = typer.main.get_command(app)
    context = root.context_class(root, info_name="lce", terminal_width=WIDTH, max_content_width=WIDTH)
    found = list(commands(root, context))
    index = "\n".join(f"- [`{ctx.command_path}`](#{anchor(ctx.command_path)})" for _, ctx in found)
    return "\n".join([HEADER, index, ""] + [section(cmd, ctx) for cmd, ctx in found])


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading `lce db status`: lower case, spaces as hyphens, punctuation dropped."""
    return "".join(c for c in heading.lower().replace(" ", "-") if c.isalnum() or c in "-_")


def main() -> None:
    print(reference(), end="")


if __name__ == "__main__":
    main()
