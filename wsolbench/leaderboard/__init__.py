"""``wsolbench leaderboard``: recorded runs beside the published numbers, one row per method x backbone x
dataset. :mod:`.records` reads the run records (skipping bad files with a warning), :mod:`.table` builds
the rows (ours: mean ± std over seeds; published: ``published.csv``, with citations and tiers) and
:mod:`.formats` renders them (GitHub Markdown, LaTeX, HTML, CSV, JSON). Torch-free.
"""
