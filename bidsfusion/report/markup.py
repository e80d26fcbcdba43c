"""HTML pieces of the report: every text escaped, images as base64 data URIs, and
:func:`guarded`, which turns a section's failure into a one-line message."""

from __future__ import annotations

import base64
import html
import logging
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from bidsfusion.errors import BidsFusionError

log = logging.getLogger("bidsfusion.report")


class Markup(str):
    """Text that is already HTML: :func:`table` puts it in a cell unescaped."""


def esc(value: object) -> str:
    """``value`` as escaped HTML text."""
    return html.escape(str(value), quote=True)


def note(text: str) -> str:
    """A paragraph of plain information (an analysis that did not run)."""
    return f'<p class="note">{esc(text)}</p>\n'


def problem(text: str) -> str:
    """A paragraph saying what is missing or malformed."""
    return f'<p class="problem">{esc(text)}</p>\n'


def badge(text: str, kind: str = "flag") -> Markup:
    """A small coloured label (``flag``: red, ``good``: green)."""
    return Markup(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def table(
    columns: Sequence[str],
    rows: Iterable[Sequence[object]],
    row_classes: Sequence[str] | None = None,
) -> str:
    """A table; cells are escaped unless :class:`Markup`; ``row_classes`` (one per row,
    ``""`` for none) mark rows."""
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = []
    for i, row in enumerate(rows):
        kind = row_classes[i] if row_classes else ""
        attribute = f' class="{esc(kind)}"' if kind else ""
        cells = "".join(f"<td>{c if isinstance(c, Markup) else esc(c)}</td>" for c in row)
        body.append(f"<tr{attribute}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>\n"


def figure(png: bytes, alt: str, names: Sequence[str]) -> str:
    """An embedded PNG with the relative paths of its source files under it."""
    data = base64.b64encode(png).decode("ascii")
    listed = ", ".join(f"<code>{esc(name)}</code>" for name in names)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
        f"<figcaption>source: {listed}</figcaption></figure>\n"
    )


def sources(names: Sequence[str]) -> str:
    """A line naming the source files of a table."""
    return f'<p class="source">source: {", ".join(f"<code>{esc(n)}</code>" for n in names)}</p>\n'


def heading(text: str, *badges: Markup) -> str:
    """A subsection heading, optionally followed by badges."""
    return f"<h3>{esc(text)} {' '.join(badges)}</h3>\n"


def stale(output: str, specs: Sequence[str], analysis: str) -> str:
    """A problem line: ``output`` shows models of ``specs`` trained again since."""
    return problem(
        f"{output} was written before {', '.join(specs)} was trained again: it shows the "
        f"earlier models; rerun with --eval-only --analysis {analysis}"
    )


def relative(path: Path, group_dir: Path) -> str:
    """``path`` relative to OUTPUT_DIR (``group/...``)."""
    try:
        return str(path.relative_to(group_dir.parent))
    except ValueError:
        return str(path)


def guarded(build: Callable[[], str], group_dir: Path, what: str) -> str:
    """``build()``, or on failure a one-line message (paths relative to OUTPUT_DIR):
    the report never stops at a malformed input or a failing figure."""
    try:
        return build()
    except BidsFusionError as error:
        message = str(error)
    except Exception as error:  # a figure's bug must not cost the run its report
        log.warning("report: %s failed: %s: %s", what, type(error).__name__, error)
        message = f"{what} failed: {type(error).__name__}: {error}"
    message = " ".join(message.replace(f"{group_dir.parent}/", "").split())
    return problem(message)
