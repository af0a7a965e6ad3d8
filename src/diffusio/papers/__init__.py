"""One module per seed paper: its reproduction.

Each ``diffusio.papers.<name>`` module defines ``reproduce(out_dir, quick=False) -> dict``, run by
``diffusio reproduce NAME``. It trains (or reuses a finished cached run under ``out_dir/models``),
evaluates, and writes ``out_dir/report.md`` (the paper's claim, our measurement, the scale and
the gap), PNG figures and ``metrics.json`` through :class:`diffusio.papers.report.Report`.
``quick=True`` is the few-minute version of the same experiment.
"""
