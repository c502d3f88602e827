"""Analyses of finished run directories (they read run directories only, never train).

    python -m analysis.tables RUNS... --out OUT          paper Tables 2, 6, 7, 8, 9 and Fig. 8
    python -m analysis.umap_features RUNS... --out OUT   Fig. 7: UMAP of backbone features per domain
    python -m analysis.per_bin RUN --out OUT             Fig. 9: error and training density per factor bin
    python -m analysis.findings RUNS... --out FINDINGS.md   the tables with answers read off the numbers

RUNS are run directories or folders holding them (searched recursively). Modules:
``rundirs`` (loading, what a run is), ``training_mix`` (factors and shares of the training mix),
``domain_classifier`` (how separable two domains' features are), ``stats`` (Welch and slope
t-intervals: when findings calls a difference or a trend resolved), ``notebooks/`` (the same, run
top to bottom on run directories named by ``GTAHUMAN_RUNS``).
"""
