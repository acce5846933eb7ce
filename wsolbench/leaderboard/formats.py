"""Rendering leaderboard rows: GitHub Markdown, LaTeX, HTML, CSV and JSON.

Every text format shows the same columns: the row number, method, backbone, dataset, runs, MaxBoxAccV2 with
its IoU 30/50/70 parts, Top-1 Loc, GT-known Loc, Top-1 Cls, PxAP (the box columns when a row has box
scores, PxAP when one has mask scores), the tier and the notes (marks, seeds, source). A mean over seeds
is written ``mean ± std``; an absent metric ``-``. ``commands=True`` adds the command that reproduces each
row of ours (each seed's) and the citation of each published one, numbered as the rows. HTML is rendered by
jinja2 with autoescaping, so a plugin's method name cannot inject markup; LaTeX escapes its special
characters. The JSON is a list of rows, each with its results as (task, dataset, split, metric, value,
std) entries, the tier, date, code version, seeds and environment: the shape result registries ingest.
"""

from __future__ import annotations

import csv
import io
import json
import re

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from tabulate import tabulate

from wsolbench.errors import WsolbenchError
from wsolbench.leaderboard.table import METRIC_NAMES, METRICS, TASK, Row, Value

FORMATS = ("github", "latex", "html", "csv", "json")
_IOU_PARTS = ("maxboxacc_v2_iou30", "maxboxacc_v2_iou50", "maxboxacc_v2_iou70")
_LATEX_SPECIAL = re.compile(r"([&%$#_{}~^\\])")
_LATEX_REPLACEMENTS = {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def _cell(value: Value | None, plus_minus: str = "±") -> str:
    if value is None:
        return "-"
    return f"{value.mean:.1f}" if value.std is None else f"{value.mean:.1f} {plus_minus} {value.std:.1f}"


def _iou_cell(row: Row) -> str:
    parts = [row.values.get(key) for key in _IOU_PARTS]
    return "-" if any(p is None for p in parts) else "/".join(f"{p.mean:.1f}" for p in parts)


def _notes(row: Row) -> str:
    notes = row.flags()  # the tier has its own column
    if row.kind == "reproduced":
        notes.append("seeds " + ",".join(str(s) for s in row.seeds))
    if row.source:
        notes.append(row.source)
    return "; ".join(notes)


def _columns(rows: list[Row]) -> tuple[bool, bool]:
    """Whether to show the box columns and the PxAP column."""
    box = any("maxboxacc_v2" in row.values or "top1_loc" in row.values or "gt_known_loc" in row.values
              for row in rows)
    return box or not rows, any("pxap" in row.values for row in rows)


def table_cells(rows: list[Row], plus_minus: str = "±") -> tuple[list[str], list[list[str]]]:
    """``(headers, cells)`` of the text table (see the module docstring)."""
    box, pixel = _columns(rows)
    headers = ["#", "method", "backbone", "dataset", "runs"]
    if box:
        headers += ["MaxBoxAccV2", "@30/50/70", "Top-1 Loc", "GT-known Loc", "Top-1 Cls"]
    if pixel:
        headers += ["PxAP"] + ([] if box else ["Top-1 Cls"])
    headers += ["tier", "notes"]
    cells = []
    for number, row in enumerate(rows, 1):
        line = [str(number), row.method, row.backbone, row.dataset, str(row.runs) if row.runs else "-"]
        if box:
            line += [_cell(row.values.get("maxboxacc_v2"), plus_minus), _iou_cell(row),
                     *(_cell(row.values.get(k), plus_minus) for k in ("top1_loc", "gt_known_loc", "top1_cls"))]
        if pixel:
            line += [_cell(row.values.get("pxap"), plus_minus)]
            line += [] if box else [_cell(row.values.get("top1_cls"), plus_minus)]
        cells.append(line + [row.tier, _notes(row)])
    return headers, cells


def _references(rows: list[Row]) -> list[tuple[int, str]]:
    """``(row number, line)``: each reproduced row's commands, each published row's citation."""
    lines = []
    for number, row in enumerate(rows, 1):
        if row.kind == "reproduced":
            lines += [(number, command) for command in row.commands]
        else:
            lines.append((number, f"{row.citation} ({row.source})"))
    return lines


def _latex_escape(text: str) -> str:
    return _LATEX_SPECIAL.sub(lambda m: _LATEX_REPLACEMENTS.get(m.group(1), "\\" + m.group(1)), text)


def render_github(rows: list[Row], commands: bool = False) -> str:
    headers, cells = table_cells(rows)
    text = tabulate(cells, headers=headers, tablefmt="github", disable_numparse=True)
    if commands:
        text += "\n\n" + "\n".join(f"[{number}] `{line}`" for number, line in _references(rows))
    return text


def render_latex(rows: list[Row], commands: bool = False) -> str:
    headers, cells = table_cells(rows, plus_minus="PLUSMINUS")
    escaped = [[_latex_escape(cell).replace("PLUSMINUS", r"$\pm$") for cell in line] for line in cells]
    # latex_raw: the cells are escaped here (tabulate's other LaTeX formats would escape $\pm$ again)
    text = tabulate(escaped, headers=[_latex_escape(h) for h in headers], tablefmt="latex_raw",
                    disable_numparse=True)
    if commands:
        text += "\n" + "\n".join(f"% [{number}] {line}" for number, line in _references(rows))
    return text


_ENVIRONMENT = Environment(loader=PackageLoader("wsolbench.leaderboard", "templates"),
                           autoescape=select_autoescape(default=True, default_for_string=True))


def html_fragment(rows: list[Row], commands: bool = False) -> Markup:
    """The leaderboard as an HTML ``<table>`` (escaped), for a page of its own or the report's."""
    headers, cells = table_cells(rows)
    references = {}
    for number, line in _references(rows) if commands else ():
        references.setdefault(number, []).append(line)
    return Markup(_ENVIRONMENT.get_template("table.html.j2").render(
        headers=headers, cells=cells, references=[references.get(n, []) for n in range(1, len(rows) + 1)],
        commands=commands))


def render_html(rows: list[Row], commands: bool = False) -> str:
    return _ENVIRONMENT.get_template("leaderboard.html.j2").render(table=html_fragment(rows, commands))


def render_csv(rows: list[Row], commands: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "backbone", "dataset", "kind", "tier", "runs", "seeds",
                     *(name for metric in METRICS for name in (metric, f"{metric}_std")),
                     "marks", "source", "citation", "date", "code_version", "commands"])
    for row in rows:
        values = []
        for metric in METRICS:
            value = row.values.get(metric)
            values += ["" if value is None else f"{value.mean:.4f}",
                       "" if value is None or value.std is None else f"{value.std:.4f}"]
        writer.writerow([row.method, row.backbone, row.dataset, row.kind, row.tier, row.runs,
                         " ".join(map(str, row.seeds)), *values, "; ".join(row.marks()), row.source, row.citation,
                         row.date or "", row.code_version or "", " && ".join(row.commands)])
    return buffer.getvalue()


def render_json(rows: list[Row], commands: bool = False) -> str:
    entries = []
    for row in rows:
        entries.append({
            "method": row.method, "backbone": row.backbone, "dataset": row.dataset, "kind": row.kind,
            "tier": row.tier, "marks": row.marks(), "untuned": row.untuned,
            "localization_labels": row.localization_labels, "runs": row.runs, "seeds": row.seeds,
            "date": row.date, "code_version": row.code_version, "environment": row.environment,
            "source": row.source, "citation": row.citation, "note": row.note, "commands": row.commands,
            "results": [{"task": TASK, "dataset": row.dataset, "split": "test", "metric": METRIC_NAMES[metric],
                         "key": metric, "value": value.mean, "std": value.std}
                        for metric, value in row.values.items() if metric in METRIC_NAMES]})
    return json.dumps({"task": TASK, "rows": entries}, indent=2)


RENDERERS = {"github": render_github, "latex": render_latex, "html": render_html, "csv": render_csv,
             "json": render_json}


def render(rows: list[Row], fmt: str, commands: bool = False) -> str:
    """``rows`` in format ``fmt`` (one of :data:`FORMATS`)."""
    if fmt not in RENDERERS:
        raise WsolbenchError(f"unknown leaderboard format {fmt!r}; choose from {', '.join(FORMATS)}")
    return RENDERERS[fmt](rows, commands)
