"""The HTML pieces of the report: a page shell with inline CSS and the sorting script, sortable tables, sections.

    page("lce report", body_html)                   # a whole document
    table(["unit", "IoU"], rows, numeric={1}, table_id="units")

Everything is inline or a relative link: a page opens from disk, with no server and no network. Table cells are
escaped here; pass Raw(...) for a cell that is already HTML (a link, an image), UNKNOWN for a value the store
does not know (shown as "-", where an empty cell means there is nothing: no label, no strip).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0 auto; padding: 1em 2em;
       max-width: 1500px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
nav a { margin-right: 1em; } .meta, .note { color: #555; } .note { font-style: italic; }
img.figure { max-width: 100%; height: auto; border: 1px solid #eee; }
table { border-collapse: collapse; margin: 0.6em 0; } th, td { padding: 3px 8px; border-bottom: 1px solid #eee;
       text-align: left; vertical-align: middle; }
th { background: #f5f5f5; position: sticky; top: 0; z-index: 1; }
table.sortable th { cursor: pointer; user-select: none; } table.sortable th:hover { background: #e8eef7; }
th[data-dir="asc"]::after { content: " \\25B2"; } th[data-dir="desc"]::after { content: " \\25BC"; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.dim td { color: #999; } td.strip img { display: block; }
.tag { display: inline-block; padding: 0 6px; border-radius: 3px; color: #fff; font-size: 0.85em; }
.components { display: flex; flex-wrap: wrap; gap: 2em; }
.scroll { max-height: 30em; overflow-y: auto; display: inline-block; border: 1px solid #eee; }
"""

# Click a header to sort by its column; again to reverse. Numeric columns (class "num") sort by data-sort or their
# text as numbers, empty cells last; others alphabetically.
SORT_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var ascending = th.dataset.dir !== "asc";
      table.querySelectorAll("thead th").forEach(function (other) { delete other.dataset.dir; });
      th.dataset.dir = ascending ? "asc" : "desc";
      var numeric = th.classList.contains("num");
      var key = function (row) {
        var cell = row.cells[column];
        var value = cell.dataset.sort !== undefined ? cell.dataset.sort : cell.textContent.trim();
        return numeric ? (value === "" ? NaN : Number(value)) : value.toLowerCase();
      };
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (numeric) {
          if (isNaN(x) || isNaN(y)) { return isNaN(x) - isNaN(y); }
          return ascending ? x - y : y - x;
        }
        return ascending ? x.localeCompare(y) : y.localeCompare(x);
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


NUMERIC = ' class="num"'


class Raw(str):
    """Markup that a table cell takes as it is (not escaped)."""


UNKNOWN = Raw("-")  # a value the store does not know (an imported run's interval); sorts after every number


def page(title: str, body: str) -> str:
    """A whole HTML document: the inline style sheet, the body, and the sorting script."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{escape(title)}</title>\n"
        f"<style>{CSS}</style>\n</head>\n<body>\n{body}\n<script>{SORT_JS}</script>\n</body>\n</html>\n"
    )


class Section(str):
    """A section's markup, which also knows its anchor and title (for the page's navigation)."""

    anchor: str
    title: str


def section(anchor: str, title: str, *parts: str) -> Section:
    made = Section(f"<section id=\"{anchor}\">\n<h2>{escape(title)}</h2>\n" + "\n".join(p for p in parts if p)
                   + "\n</section>")
    made.anchor, made.title = anchor, title
    return made


def navigation(sections: list[Section]) -> str:
    """Links to the sections, by the first words of their titles (before a colon)."""
    return "<nav>" + "".join(f'<a href="#{s.anchor}">{escape(s.title.split(":")[0])}</a>' for s in sections) + "</nav>"


def paragraph(text: str, css: str | None = None) -> str:
    kind = f" class=\"{css}\"" if css else ""
    return f"<p{kind}>{escape(text)}</p>"


def figure(src: str, alt: str, width: int | None = None) -> str:
    size = f" width=\"{width}\"" if width else ""
    return f"<p><img class=\"figure\" src=\"{escape(src)}\" alt=\"{escape(alt)}\"{size}></p>"


def link(href: str, text: str) -> Raw:
    return Raw(f"<a href=\"{escape(href)}\">{escape(text)}</a>")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int] = frozenset(),
          table_id: str | None = None, sortable: bool = True, row_attributes: Iterable[str] | None = None,
          cell_classes: dict[int, str] | None = None) -> str:
    """A table; columns in `numeric` are right-aligned and sort as numbers (a float shows 3 decimals and sorts by
    its full value; None is an empty cell). row_attributes: extra attributes of each <tr>, in row order."""
    classes = ' class="sortable"' if sortable else ""
    ident = f' id="{table_id}"' if table_id else ""
    head = "".join(f"<th{NUMERIC if i in numeric else ''}>{escape(h)}</th>" for i, h in enumerate(headers))
    lines = [f"<table{classes}{ident}>", f"<thead><tr>{head}</tr></thead>", "<tbody>"]
    attributes = iter(row_attributes) if row_attributes is not None else None
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            css = ["num"] if i in numeric else []
            if cell_classes and i in cell_classes:
                css.append(cell_classes[i])
            kind = f' class="{" ".join(css)}"' if css else ""
            cells.append(f"<td{kind}{_sort_key(value)}>{_cell(value)}</td>")
        extra = f" {next(attributes)}" if attributes is not None else ""
        lines.append(f"<tr{extra}>{''.join(cells)}</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, Raw):
        return value
    if isinstance(value, float):
        return f"{value:.3f}"
    return escape(str(value))


def _sort_key(value: object) -> str:
    if isinstance(value, float):
        return f' data-sort="{value!r}"'
    return ""
