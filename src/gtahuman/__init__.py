"""gtahuman: 3D human recovery experiments with synthetic and real data."""
__version__ = "0.1.0"
