"""Which body-model point each annotated keypoint is: the data term's correspondence table.

A `KeypointMap` pairs keypoints of a source convention (the 100-joint GTA skeleton, or any
convention of `gtahuman.body.conventions`) with points of the body model, expressed as rows
of weights over the model's ``smpl_54`` joints (kinematic joints, vertex landmarks and
J_regressor_extra joints). Correspondences are found **by name**:

* *exact* rows: the source joint has the name of a smpl_54 joint (``pelvis``, ``left_knee``,
  ``nose`` ...): a one-hot row, full weight;
* *approximate* rows, lower weight (``approximate_weight``), for points that only stand near
  a model point:
  - for ``gta``, a few game bones without a standard name, by what their names say
    (`GTA_APPROXIMATIONS`: head top, clavicles, upper spine, roots, IK / PH hand and foot
    targets, elbow and knee helpers, roll bones at the middle of their bone). The table is the
    annotator's own guess at the game's rig: it does not read how any generator places game
    joints (the mini world's rig adds offsets of its own, `gtahuman.miniworld.game_skeleton`, and a
    test fits rigs with other offsets). Fingers and the facial rig are left out: where a
    game's rig puts them is unknown, and the named eyes, ears and nose cover the head;
  - for other conventions, the equivalence groups of `conventions` (``neck_openpose`` ~
    ``neck`` ...).
Source joints without any correspondence are left out of the map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gtahuman.body.conventions import get_names, mapping_indices
from gtahuman.body.joint_names import SMPL_54

NUM_MODEL_POINTS = len(SMPL_54)
NUM_KINEMATIC = 24
DEFAULT_APPROXIMATE_WEIGHT = 0.5


def _gta_approximations() -> dict[str, dict[str, float]]:
    table: dict[str, dict[str, float]] = {
        "gta_head_top": {"headtop": 1.0}, "gta_spine4": {"spine_3": 1.0}, "gta_IK_Head": {"head": 1.0},
        "gta_SKEL_ROOT": {"pelvis": 1.0}, "gta_SKEL_Pelvis": {"pelvis": 1.0}, "gta_IK_Root": {"pelvis": 1.0},
    }
    for side, full in (("R", "right"), ("L", "left")):
        table[f"gta_{full}_clavicle"] = {f"{full}_collar": 1.0}
        table[f"gta_MH_{side}_Elbow"] = {f"{full}_elbow": 1.0}
        table[f"gta_MH_{side}_Knee"] = {f"{full}_knee": 1.0}
        for kind in ("IK", "PH"):
            table[f"gta_{kind}_{side}_Hand"] = {f"{full}_hand": 1.0}
            table[f"gta_{kind}_{side}_Foot"] = {f"{full}_ankle": 1.0}
        for roll, (start, end) in {"ArmRoll": ("shoulder", "elbow"), "ForeArmRoll": ("elbow", "wrist"),
                                   "ThighRoll": ("hip", "knee")}.items():
            table[f"gta_RB_{side}_{roll}"] = {f"{full}_{start}": 0.5, f"{full}_{end}": 0.5}
    return table


# The annotator's guesses for game bones without a standard name: gta joint -> mix of smpl_54 points.
GTA_APPROXIMATIONS: dict[str, dict[str, float]] = _gta_approximations()


@dataclass(frozen=True)
class KeypointMap:
    """Targets of the data term: ``keypoints[..., source_indices, :]`` ~ ``model_mix @ smpl_54``."""

    convention: str
    source_indices: np.ndarray  # (K,) int64: which source keypoints are used
    model_mix: np.ndarray  # (K, 54) float64: each target as a mix of smpl_54 joints (rows sum to 1)
    weights: np.ndarray  # (K,) float64: data-term weight of each target
    exact: np.ndarray  # (K,) bool: a same-name correspondence (not an approximation)

    @property
    def names(self) -> tuple[str, ...]:
        """Source joint names of the K targets."""
        names = get_names(self.convention)
        return tuple(names[i] for i in self.source_indices)

    @property
    def model_columns(self) -> np.ndarray:
        """smpl_54 indices any target reads (ascending)."""
        return np.flatnonzero(np.abs(self.model_mix).sum(axis=0) > 0)

    def kinematic_targets(self) -> dict[int, int]:
        """SMPL kinematic joint -> target row, for targets that are exactly one kinematic joint
        (one-hot rows; exact ones preferred). Initialisation reads these."""
        found: dict[int, int] = {}
        order = np.argsort(~self.exact, kind="stable")  # exact rows first
        for row in order:
            mix = self.model_mix[row]
            column = int(np.argmax(mix))
            if column < NUM_KINEMATIC and np.isclose(mix[column], 1.0) and column not in found:
                found[column] = int(row)
        return found

    def select(self, keypoints: np.ndarray) -> np.ndarray:
        """(..., J_src, C) source keypoints -> (..., K, C) targets in map order."""
        keypoints = np.asarray(keypoints)
        expected = len(get_names(self.convention))
        if keypoints.ndim < 2 or keypoints.shape[-2] != expected:
            raise ValueError(f"keypoints of convention '{self.convention}' must have shape "
                             f"(..., {expected}, C); got {keypoints.shape}")
        return keypoints[..., self.source_indices, :]


def _one_hot(columns: np.ndarray) -> np.ndarray:
    rows = np.zeros((len(columns), NUM_MODEL_POINTS))
    rows[np.arange(len(columns)), columns] = 1.0
    return rows


def keypoint_map(convention: str, *, approximate: bool = True,
                 approximate_weight: float = DEFAULT_APPROXIMATE_WEIGHT) -> KeypointMap:
    """The correspondence table of ``convention`` (unknown names raise, listing the valid ones).

    ``approximate=False`` keeps the exact same-name correspondences only.
    """
    if not 0.0 <= approximate_weight <= 1.0:
        raise ValueError(f"approximate_weight must be in [0, 1]; got {approximate_weight}")
    source_names = get_names(convention)
    dst, src = mapping_indices("smpl_54", convention, False)  # smpl_54[src] has the name of convention[dst]
    rows = {int(d): (_one_hot(np.array([s]))[0], True) for d, s in zip(dst, src)}
    if approximate:
        if convention == "gta":
            position = {name: i for i, name in enumerate(SMPL_54)}
            for index, name in enumerate(source_names):
                if name in GTA_APPROXIMATIONS:
                    row = np.zeros(NUM_MODEL_POINTS)
                    for point, weight in GTA_APPROXIMATIONS[name].items():
                        row[position[point]] += weight
                    rows.setdefault(index, (row, False))
        else:
            dst_a, src_a = mapping_indices("smpl_54", convention, True)
            for d, s in zip(dst_a, src_a):
                rows.setdefault(int(d), (_one_hot(np.array([s]))[0], False))
    order = sorted(rows)
    if not order:
        raise ValueError(f"keypoint convention '{convention}' shares no joint name with the body model")
    exact = np.array([rows[i][1] for i in order])
    return KeypointMap(
        convention=convention,
        source_indices=np.asarray(order, dtype=np.int64),
        model_mix=np.stack([rows[i][0] for i in order]),
        weights=np.where(exact, 1.0, approximate_weight),
        exact=exact,
    )
