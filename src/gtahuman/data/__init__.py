"""Data layer: format readers/writers, the sample index, crop cache, samplers, datamodules."""
