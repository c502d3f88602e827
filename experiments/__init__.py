"""Entry points: ``python -m experiments.run`` (one experiment) and ``python -m experiments.sweep``."""
