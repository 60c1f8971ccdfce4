"""`gankit reproduce REPORT`: a report's experiments run, measured and set beside the claims it makes.

- :mod:`.measures`: the metrics a claim may name (a registry: the claims files are checked against it);
- :mod:`.claims`: the claims files (``gankit/reproduce/claims/NNN.yaml``), read and validated;
- :mod:`.verdict`: pure functions from per-seed numbers to holds / does not hold / not decided;
- :mod:`.runner`: the runs of a report at a budget, trained (resumably, by several workers) and evaluated;
- :mod:`.page`: ``report.html`` and ``claims.json``.
"""
