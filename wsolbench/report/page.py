"""``report.html``: one self-contained page, rendered by jinja2 with autoescaping.

Every value from a record, a plugin or the file system (method, dataset and backbone names, image ids,
folders) is escaped by the template engine; the only markup passed in is ``leaderboard_html``, which must
be a :class:`markupsafe.Markup` (already escaped by whoever built it) to be inserted as HTML; a plain
``str`` is escaped like any other value. Figures are embedded as ``data:image/png;base64`` URIs and the CSS
is inline; the page's Content-Security-Policy allows nothing else (no script, no external resource).
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from wsolbench import __version__

_ENVIRONMENT = Environment(loader=PackageLoader("wsolbench.report", "templates"), autoescape=True,
                           undefined=StrictUndefined, keep_trailing_newline=True)
TEMPLATE = "report.html.j2"


@dataclass(frozen=True)
class ReportFigure:
    """A figure of the page: its file name, PNG bytes, caption and alternative text, and for the examples
    grid the image ids it shows (listed under it)."""

    name: str
    png: bytes
    caption: str
    alt: str
    image_ids: tuple[str, ...] = ()

    @property
    def uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` in pixels, from the PNG header."""
        return png_size(self.png)


@dataclass(frozen=True)
class ScoreRow:
    """A row of the score table; ``value`` is None where the score is absent (shown as a dash)."""

    name: str
    value: str | None
    detail: str = ""


def png_size(png: bytes) -> tuple[int, int]:
    """``(width, height)`` of PNG bytes; ValueError if they are no PNG."""
    if png[:8] != b"\x89PNG\r\n\x1a\n" or png[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    return struct.unpack(">II", png[16:24])


def _percent(value) -> str | None:
    return None if value is None else f"{value:.2f}"


def _tau(value) -> str:
    return "" if value is None else f"\u03c4 = {value:g}"


def score_rows(scores: dict) -> list[ScoreRow]:
    """The table of test scores from a score dict (``report_json``'s keys): MaxBoxAccV2 and its IoU terms,
    MaxBoxAcc (V1), GT-known / Top-1 / Top-5 Loc, Top-1 / Top-5 Cls, PxAP; absent ones keep their row."""
    ious = scores.get("iou_thresholds") or [30, 50, 70]
    per_iou = scores.get("maxboxacc_v2_per_iou", {})
    best = scores.get("best_threshold", {})
    rows = [ScoreRow(f"MaxBoxAccV2 (mean over IoU {', '.join(map(str, ious))})", _percent(scores.get("maxboxacc_v2")),
                     "all contours, each IoU at its own best \u03c4")]
    rows += [ScoreRow(f"\u2003MaxBoxAccV2 @ IoU {iou}", _percent(per_iou.get(str(iou))), _tau(best.get(str(iou))))
             for iou in ious]
    v1_detail = _tau(scores.get("best_threshold_v1", {}).get("50")) + (", largest contour" if "maxboxacc" in scores else "")
    rows.append(ScoreRow("MaxBoxAcc (V1, IoU 50)", _percent(scores.get("maxboxacc")), v1_detail))
    contours = scores.get("loc_contours")
    for key, name in (("gt_known_loc", "GT-known Loc"), ("top1_loc", "Top-1 Loc"), ("top5_loc", "Top-5 Loc")):
        detail = _tau(scores.get(f"{key}_best_threshold"))
        if key in scores and contours:
            detail += f", {contours} contours, IoU 50"
        if f"{key}_at_threshold" in scores:
            detail += f"; {scores[f'{key}_at_threshold']:.2f} at \u03c4 = {scores['loc_threshold']:g}"
        rows.append(ScoreRow(name, _percent(scores.get(key)), detail))
    rows.append(ScoreRow("Top-1 Cls", _percent(scores.get("top1_cls"))))
    rows.append(ScoreRow("Top-5 Cls", _percent(scores.get("top5_cls"))))
    rows.append(ScoreRow("PxAP", _percent(scores.get("pxap")), "pixel average precision" if "pxap" in scores else ""))
    return rows


def render_page(*, title: str, facts: list[tuple[str, str]], scores: dict, figures: list[ReportFigure],
                leaderboard_html: str = "") -> str:
    """The HTML of ``report.html``: ``title``, ``facts`` (label, value pairs under it), the score table of
    ``scores``, the figures with captions, and the "Leaderboard rows" section (``leaderboard_html``: a
    ``Markup`` fragment, inserted as it is; a plain string is escaped)."""
    return _ENVIRONMENT.get_template(TEMPLATE).render(
        title=title, facts=facts, rows=score_rows(scores), version=__version__,
        figures=[{"name": f.name, "uri": f.uri, "caption": f.caption, "alt": f.alt, "image_ids": f.image_ids,
                  "width": f.size[0], "height": f.size[1]} for f in figures],
        leaderboard_html=leaderboard_html if isinstance(leaderboard_html, Markup) else str(leaderboard_html))
