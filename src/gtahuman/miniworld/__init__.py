"""The procedural mini world: toy bodies, motion, rendering, written in the real dataset formats."""
