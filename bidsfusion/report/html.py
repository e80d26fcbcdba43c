"""``group/report.html``: one self-contained page summarising a group run.

Images are embedded as base64 data URIs and the style sheet is inline: the file has no
script and refers to nothing outside itself, so it can be mailed or archived alone.
Every section reads its own files; a missing or malformed input costs only its
section a one-line message naming the file, and an analysis that did not run says so.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from functools import partial
from pathlib import Path

from bidsfusion import __version__
from bidsfusion.analyses.confounds import NAME as CONFOUNDS
from bidsfusion.analyses.group_differences import NAME as GROUP_DIFFERENCES
from bidsfusion.analyses.saliency import NAME as SALIENCY
from bidsfusion.atomic import write_text
from bidsfusion.layout import GroupLayout
from bidsfusion.report import confounds, maps, sections, training
from bidsfusion.report.markup import esc, guarded

SECTIONS: tuple[tuple[str, str, Callable[[GroupLayout], str]], ...] = (
    ("configuration", "Run configuration", sections.configuration),
    ("dataset", "Dataset and pairs", sections.dataset),
    ("splits", "Splits", sections.splits),
    ("evaluation", "Evaluation", sections.evaluation),
    ("similarity", "Representational similarity", sections.similarity),
    ("training", "Training", training.training),
    (SALIENCY, "Saliency: the cross-modal pair", maps.saliency),
    (GROUP_DIFFERENCES, "Group differences", maps.group_differences),
    (
        CONFOUNDS,
        "Confounds: what the representations encode besides the diagnosis",
        confounds.confounds,
    ),
)
"""Anchor, title and builder of every section, in page order."""

STYLE = """
body { font-family: sans-serif; margin: 0 auto; max-width: 1250px; padding: 1em 2em;
       color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 2px solid #ccc; margin-top: 1.8em; }
nav a { margin-right: 1em; } figure { margin: 1em 0; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption, .source { font-size: 0.8em; color: #666; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f2f2f2; }
tr.flagged td { background: #fde2e2; } tr.control td { background: #fff3e0; }
.note { color: #444; } .good { color: #1b7f2a; font-weight: bold; }
.problem { color: #a30000; background: #fde2e2; padding: 0.4em 0.7em; border-radius: 4px; }
.badge { font-size: 0.75em; padding: 0.1em 0.5em; border-radius: 3px; color: white;
         font-weight: normal; white-space: nowrap; }
.badge.flag { background: #c62828; } .badge.good { background: #2e7d32; }
"""


def write_report(layout: GroupLayout) -> Path:
    """Build ``group/report.html`` from the files of a group run; write it atomically
    and return its path."""
    body = []
    for anchor, title, build in SECTIONS:
        content = guarded(partial(build, layout), layout.root, f"the {title.lower()} section")
        body.append(f'<section id="{anchor}"><h2>{esc(title)}</h2>\n{content}</section>\n')
    write_text(layout.report, _page(layout.root, "".join(body)))
    return layout.report


def _page(group_dir: Path, body: str) -> str:
    stamp = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    links = " ".join(f'<a href="#{anchor}">{esc(title)}</a>' for anchor, title, _ in SECTIONS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>bidsfusion group report</title>\n<style>{STYLE}</style></head>\n<body>\n"
        "<h1>bidsfusion group report</h1>\n"
        f'<p class="note">{esc(group_dir.resolve())}: written {esc(stamp)} by bidsfusion '
        f"{esc(__version__)}</p>\n<nav>{links}</nav>\n{body}</body></html>\n"
    )
