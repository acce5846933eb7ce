"""``wsolbench report``: figures and one self-contained HTML page for a run's test split, or for score maps
from any codebase, drawn from the maps alone (no model).

:mod:`.figures` holds what is plotted, as functions that return it (:func:`~.figures.threshold_curve_data`;
the boxes the metric scores come from :func:`wsolbench.metrics.functional.contour_boxes`), and draws the PNG
figures with matplotlib
(``matplotlib.figure.Figure`` on the Agg canvas, no pyplot state): ``examples.png`` (test images with
their map and boxes), ``threshold_curves.png`` (accuracy against CAM threshold per IoU, box splits) and
``pr_curve.png`` (the PxAP precision-recall curve, mask splits). :mod:`.page` renders ``report.html``
through a jinja2 template with autoescaping: figures embedded as ``data:`` URIs, CSS inline, a
Content-Security-Policy that allows nothing else. :mod:`.build` resolves the inputs (a run folder with
maps kept by ``wsolbench run --save-scoremaps``, or ``--scoremaps/--metadata/--images``), scores them
with :func:`wsolbench.evaluate.evaluate_split` and writes the files atomically.

The figure and page modules never import torch; scoring goes through :mod:`wsolbench.evaluate`, whose
metric classes are torchmetrics ones.
"""
