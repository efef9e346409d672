"""reports/index.html: one page a person opens to choose a student.

The page is self-contained apart from images, which it links relative to reports/ (where it lives),
so the whole reports/ folder can be copied, served or attached as an artifact and still render.
Every piece of text from the input files is escaped: model and task names come from directory names.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
h1 { margin-bottom: 0.2rem; }
section { margin-bottom: 3rem; }
table { border-collapse: collapse; font-size: 0.85rem; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.5rem; }
th { background: #f3f3f3; }
td { text-align: right; white-space: nowrap; }
td:first-child { text-align: left; font-weight: 600; }
tr.teacher td { background: #fff1f0; }
tr.condensed td { background: #fff8eb; }
img.plot { max-width: 100%; border: 1px solid #eee; }
.grids { display: flex; flex-wrap: wrap; gap: 1rem; }
figure { margin: 0; }
figure img { max-width: 420px; image-rendering: pixelated; border: 1px solid #eee; }
.missing { color: #999; font-style: italic; }
"""


@dataclass(frozen=True)
class TaskSection:
    """Everything the page shows for one task; image paths are relative to the page."""

    task: str
    headers: list[str]
    rows: list[list[str]]
    notes: list[str]
    plots: list[str]
    grids: list[tuple[str, str | None]]  # (model, grid path, or None where the evaluate stage left none)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        f'<tr class="{escape(row[0])}">' + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _grid(model: str, path: str | None) -> str:
    if path is None:
        content = '<p class="missing">no image grid</p>'
    else:
        content = f'<a href="{escape(path)}"><img src="{escape(path)}" alt="{escape(model)} image grid"></a>'
    return f"<figure>{content}<figcaption>{escape(model)}</figcaption></figure>"


def _section(section: TaskSection) -> str:
    notes = "".join(f"<li>{escape(note)}</li>" for note in section.notes)
    plots = "".join(f'<p><img class="plot" src="{escape(p)}" alt="{escape(p)}"></p>' for p in section.plots)
    grids = "".join(_grid(model, path) for model, path in section.grids)
    return (
        f'<section id="{escape(section.task)}"><h2>{escape(section.task)}</h2><ul>{notes}</ul>'
        f"{_table(section.headers, section.rows)}<h3>Pareto plots</h3>{plots}"
        f'<h3>Image grids</h3><p>input | teacher | student | target</p><div class="grids">{grids}</div></section>'
    )


def render_page(sections: list[TaskSection], title: str = "alap report") -> str:
    """The whole page: a task index, then per task its notes, summary table, Pareto plots and image grids."""
    toc = "".join(f'<li><a href="#{escape(s.task)}">{escape(s.task)}</a></li>' for s in sections)
    body = "".join(_section(s) for s in sections)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{_CSS}</style></head><body><h1>{escape(title)}</h1>"
        "<p>Speed-up and × fewer MACs are relative to the teacher; p50 is the median latency per call. "
        'Also in <a href="summary.csv">summary.csv</a> and <a href="summary.md">summary.md</a>.</p>'
        f"<ul>{toc}</ul>{body}</body></html>\n"
    )
