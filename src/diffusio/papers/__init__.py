"""One module per seed paper, each a :class:`~diffusio.papers.base.Reproduction`.

``diffusio reproduce NAME [--quick] [--set key=value ...]`` runs one: it trains through the
shared model cache (or reuses a cached model), evaluates with the domain package's scorer and
writes ``report.md`` (the paper's claims, what we measured, the scale, the gap and a verdict by
the shared rules of :mod:`~diffusio.papers.verdicts`), PNG figures and ``metrics.json``. The
registered names are :data:`diffusio.papers.base.PAPERS`; ``_template.py`` is the pattern for a
new one.
"""
