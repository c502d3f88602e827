"""The SMPL annotator (SMPLify with a 3D keypoint loss over sequences) and the Data Analyser.

Modules: `keypoint_map` (which model point each keypoint is, by name), `body_points` (those
points without posing every vertex), `init` (closed-form shape and pose), `priors`,
`smplify3d` (the batched fit), `analyser` (speed / occlusion / view filters), `annotate`
(a directory of raw GTA-Human sequences, resumable; ``python -m gtahuman.fitting``),
`synthetic` (sequences with known SMPL for checks), `smplify2d` and `static_fits` (SMPL fitted to
the 2D keypoints of single images: SPIN's static fits for keypoint-only datasets;
``python -m gtahuman.fitting.static_fits``). Figures: benchmarks/annotator.py.
"""
from gtahuman.fitting.analyser import (
    AnalyserThresholds,
    SequenceAnalysis,
    analyse_gta_sequence,
    analyse_keypoints,
)
from gtahuman.fitting.annotate import AnnotateOptions, annotate_directory
from gtahuman.fitting.keypoint_map import KeypointMap, keypoint_map
from gtahuman.fitting.priors import GaussianPosePrior
from gtahuman.fitting.smplify3d import FitSettings, SequenceFit, SMPLify3D

__all__ = [
    "AnalyserThresholds", "AnnotateOptions", "FitSettings", "GaussianPosePrior", "KeypointMap", "SMPLify3D",
    "SequenceAnalysis", "SequenceFit", "analyse_gta_sequence", "analyse_keypoints", "annotate_directory",
    "keypoint_map",
]
