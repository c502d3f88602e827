"""Rigging of the toy body: part layout, mesh assembly, skinning, regressors, pose correctives.

`toy_geometry.py` says where each tube is; this module says how they form one 6890-vertex
body and how it moves:

- **Layout.** Each tube has a fixed ring topology, the joint that drives it before its
  first *boundary*, and boundaries (control point, joint driving what follows, half-width
  of the blend zone along the axis). The right side mirrors the left.
- **Skinning.** A vertex takes the joint of the axis interval its ring lies in; within a
  blend zone it mixes the two joints with a smoothstep (so knees and elbows bend smoothly).
  The lower and upper torso also lean towards the hips and collars.
- **Regressors.** J_regressor averages the ring centred on each joint (exact for every
  shape, since ring centres are joints by construction); the H36M/extra regressors average
  rings or small vertex patches at the matching anatomical places.
- **Pose correctives.** posedirs only hold a small bulge: around each joint, vertices move
  outward by ``0.004 m * (3 - trace R_joint) * bump`` (1 cm at a 90 deg bend), which keeps
  bent elbows and knees from thinning. Everything else is exactly zero.
- **Vertex order.** The vertices smplx picks as extra joints (`smplx.vertex_ids['smplh']`:
  nose, eyes, ears, toes, heels, fingertips) are moved to their reserved indices.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from smplx.vertex_ids import vertex_ids as SMPLX_VERTEX_IDS

from gtahuman.body.joint_names import SMPL_PARENTS  # noqa: F401  (re-exported for toy.py)
from gtahuman.body.toy_geometry import (FINGERS, Proportions, TubeMesh, TubeTopology,
                                        part_shapes, tube_mesh)

NUM_VERTICES = 6890
_LEFT_RIGHT = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 22: 23}
MIRROR_JOINT = {**_LEFT_RIGHT, **{r: l for l, r in _LEFT_RIGHT.items()}}
BULGE_METRES = 0.004


@dataclass(frozen=True)
class PartLayout:
    topology: TubeTopology
    base_joint: int  # drives the part before its first boundary
    boundaries: tuple[tuple[int, int, float], ...] = ()  # (control point, next joint, half-width)
    joint_rings: tuple[tuple[int, int], ...] = ()  # (joint, control point whose ring regresses it)


_FINGER = PartLayout(TubeTopology((2, 2), 8, (1, 3)), 20, ((0, 22, 0.012),))
CENTRE_PARTS: dict[str, PartLayout] = {
    "torso": PartLayout(TubeTopology((5, 4, 3, 2, 2, 5, 1), 44, (4, 4)), 0,
                        ((2, 3, 0.04), (4, 6, 0.025), (5, 9, 0.025)),
                        ((0, 1), (3, 2), (6, 4), (9, 5))),
    "neck": PartLayout(TubeTopology((2, 1, 4, 2), 24, (2, 2)), 9,
                       ((2, 12, 0.03), (3, 15, 0.03)), ((12, 2), (15, 3))),
    "head": PartLayout(TubeTopology((), 36, (9, 10)), 15),
}
LEFT_PARTS: dict[str, PartLayout] = {
    "left_leg": PartLayout(TubeTopology((3, 1, 5, 6, 4, 8), 24, (3, 3)), 0,
                           ((1, 1, 0.05), (4, 4, 0.04), (6, 7, 0.03)), ((1, 1), (4, 4), (7, 6))),
    "left_foot": PartLayout(TubeTopology((4, 4, 3), 16, (3, 2)), 7, ((2, 10, 0.025),), ((10, 2),)),
    "left_arm": PartLayout(TubeTopology((5, 4, 5, 3, 5, 4), 24, (3, 2)), 9,
                           ((0, 13, 0.03), (1, 16, 0.04), (3, 18, 0.04), (5, 20, 0.025),
                            (6, 22, 0.02)),
                           ((13, 0), (16, 1), (18, 3), (20, 5), (22, 6))),
    **{f"left_{name}": _FINGER for name in FINGERS},
    "left_thumb": PartLayout(TubeTopology((2, 2), 8, (1, 3)), 20, ((0, 22, 0.02),)),
}


def _right(name: str) -> str:
    return name.replace("left_", "right_")


@dataclass
class Part:
    name: str
    offset: int  # index of the part's first vertex in the assembled (natural) order
    mesh: TubeMesh
    layout: PartLayout
    mirrored: bool

    def joint(self, j: int) -> int:
        return MIRROR_JOINT.get(j, j) if self.mirrored else j

    def indices(self, local: np.ndarray) -> np.ndarray:
        return self.offset + np.asarray(local)


def _nose_bump(mesh: TubeMesh, centre: np.ndarray, scale: float) -> None:
    """A small nose: push the front of the face forward (Gaussian bump)."""
    v = mesh.vertices
    d2 = v[:, 0] ** 2 + (v[:, 1] - (centre[1] - 0.02 * scale)) ** 2
    front = v[:, 2] > centre[2]
    v[:, 2] += front * 0.02 * scale * np.exp(-d2 / (2 * (0.012 * scale) ** 2))


def assemble(p: Proportions) -> tuple[np.ndarray, np.ndarray, dict[str, Part]]:
    """Vertices (natural order), faces and parts of the body with proportions ``p``."""
    shapes = part_shapes(p)
    parts: dict[str, Part] = {}
    offset = 0
    for name, layout in {**CENTRE_PARTS, **LEFT_PARTS}.items():
        mesh = tube_mesh(layout.topology, shapes[name])
        if name == "head":
            _nose_bump(mesh, shapes["head"].points[0], shapes["head"].radii[0, 0] / 0.078)
        parts[name] = Part(name, offset, mesh, layout, mirrored=False)
        offset += len(mesh.vertices)
    for name, layout in LEFT_PARTS.items():
        m = parts[name].mesh
        flip = np.array([-1.0, 1.0, 1.0])
        mirrored = TubeMesh(m.vertices * flip, m.faces[:, ::-1].copy(), m.arc, m.radial * flip,
                            m.point_rings, m.point_arc, m.end_cap_ring)
        parts[_right(name)] = Part(_right(name), offset, mirrored, layout, mirrored=True)
        offset += len(m.vertices)
    if offset != NUM_VERTICES:
        raise AssertionError(f"toy layout has {offset} vertices, expected {NUM_VERTICES}")
    vertices = np.vstack([part.mesh.vertices for part in parts.values()])
    faces = np.vstack([part.mesh.faces + part.offset for part in parts.values()])
    return vertices, faces, parts


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def skinning_and_correctives(parts: dict[str, Part]) -> tuple[np.ndarray, np.ndarray]:
    """LBS weights (N, 24) and pose correctives posedirs (N, 3, 207) from the rest body."""
    weights = np.zeros((NUM_VERTICES, 24))
    posedirs = np.zeros((NUM_VERTICES, 3, 207))
    for part in parts.values():
        arc, rows = part.mesh.arc, part.indices(np.arange(len(part.mesh.arc)))
        label = np.full(len(arc), part.joint(part.layout.base_joint))
        for cp, joint, _ in part.layout.boundaries:
            label[arc >= part.mesh.point_arc[cp]] = part.joint(joint)
        local = np.zeros((len(arc), 24))
        local[np.arange(len(arc)), label] = 1.0
        before = part.joint(part.layout.base_joint)
        for cp, joint, half in part.layout.boundaries:
            after, s0 = part.joint(joint), part.mesh.point_arc[cp]
            zone = np.abs(arc - s0) < half
            alpha = _smoothstep((arc[zone] - s0 + half) / (2 * half))
            local[zone] = 0.0
            local[zone, before] += 1.0 - alpha
            local[zone, after] += alpha
            bump = 0.5 * (1.0 + np.cos(np.pi * (arc[zone] - s0) / half))
            for diag in (0, 4, 8):  # entries of R - I whose sum is trace(R) - 3
                posedirs[rows[zone], :, (after - 1) * 9 + diag] = (
                    -BULGE_METRES * bump[:, None] * part.mesh.radial[zone])
            before = after
        weights[rows] = local
    _torso_side_blends(parts["torso"], weights)
    return weights, posedirs


def _torso_side_blends(torso: Part, weights: np.ndarray) -> None:
    """Let the shoulder tops follow the collars and the buttocks follow the hips (half)."""
    v = torso.mesh.vertices
    rows = torso.indices(np.arange(len(v)))
    pelvis_y, spine3_y = (v[torso.mesh.point_rings[i], 1].mean() for i in (1, 5))
    top_y, bottom_y = v[:, 1].max(), v[:, 1].min()
    left = v[:, 0] > 0
    upper = 0.5 * _smoothstep((np.abs(v[:, 0]) - 0.06) / 0.08) * _smoothstep(
        (v[:, 1] - spine3_y) / (top_y - spine3_y))
    lower = 0.5 * _smoothstep(np.abs(v[:, 0]) / 0.06) * _smoothstep(
        (pelvis_y - v[:, 1]) / (pelvis_y - bottom_y))
    for share, joints in ((upper, (13, 14)), (lower, (1, 2))):
        target = np.where(left, joints[0], joints[1])
        weights[rows] *= (1.0 - share)[:, None]
        weights[rows, target] += share


def _ring(parts: dict[str, Part], name: str, cp: int) -> np.ndarray:
    part = parts[name]
    return part.indices(part.mesh.point_rings[cp])


def _nearest(parts: dict[str, Part], name: str, target: np.ndarray, k: int = 1) -> np.ndarray:
    part = parts[name]
    dist = np.linalg.norm(part.mesh.vertices - target, axis=1)
    return part.indices(np.argsort(dist, kind="stable")[:k])


def regressor_vertex_sets(parts: dict[str, Part]) -> dict[str, np.ndarray]:
    """Natural vertex indices averaged for each regressed joint, by mmhuman3d name."""
    names = ("pelvis", "left_hip", "right_hip", "spine_1", "left_knee", "right_knee", "spine_2",
             "left_ankle", "right_ankle", "spine_3", "left_foot", "right_foot", "neck",
             "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
             "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand", "right_hand")
    sets: dict[str, np.ndarray] = {}
    for part in parts.values():
        for joint, cp in part.layout.joint_rings:
            sets[names[part.joint(joint)]] = part.indices(part.mesh.point_rings[cp])
    head = parts["head"]
    centre = head.mesh.vertices[head.mesh.point_rings[0]].mean(0)
    radii = np.ptp(head.mesh.vertices, axis=0)
    for side in ("left", "right"):
        sets[f"{side}_hip_extra"] = _ring(parts, f"{side}_leg", 2)
    sets["pelvis_extra"] = np.concatenate([sets["left_hip_extra"], sets["right_hip_extra"]])
    sets["spine_extra"] = _ring(parts, "torso", 3)
    sets["thorax_extra"] = _ring(parts, "torso", 6)
    sets["neck_extra"] = _ring(parts, "neck", 1)
    sets["head_extra"] = _ring(parts, "head", 0)
    sets["headtop"] = head.indices(np.append(head.mesh.end_cap_ring, len(head.mesh.vertices) - 1))
    chin = centre + np.array([0.0, -0.33, 0.29]) * radii  # relative to the head's extent
    sets["jaw_extra"] = _nearest(parts, "head", chin, k=8)
    return sets


def smplx_landmarks(parts: dict[str, Part]) -> dict[str, int]:
    """Natural index of the vertex that plays each smplx landmark (keys as in smplx)."""
    head = parts["head"].mesh.vertices
    centre = parts["head"].mesh.vertices[parts["head"].mesh.point_rings[0]].mean(0)
    size = np.ptp(head, axis=0)  # (width, height, depth) of the head
    found: dict[str, int] = {"nose": int(parts["head"].offset + np.argmax(head[:, 2]))}
    for side, sign in (("l", 1.0), ("r", -1.0)):
        eye = centre + np.array([0.21 * sign, 0.06, 0.5]) * size
        ear = centre + np.array([0.5 * sign, -0.02, -0.03]) * size
        found[f"{side}eye"] = int(_nearest(parts, "head", eye)[0])
        found[f"{side}ear"] = int(_nearest(parts, "head", ear)[0])
        prefix = "left" if sign > 0 else "right"
        for finger in (*FINGERS, "thumb"):
            tip = parts[f"{prefix}_{finger}"]
            found[f"{side}{finger}"] = int(tip.offset + len(tip.mesh.vertices) - 1)
        foot = parts[f"{prefix}_foot"]
        heel_centre, toe_centre = (
            foot.mesh.vertices[foot.mesh.point_rings[i]].mean(0) for i in (0, 3))
        big = toe_centre + np.array([-0.028 * sign, -0.005, 0.02])  # medial front
        small = toe_centre + np.array([0.03 * sign, -0.005, -0.005])  # lateral front
        heel = heel_centre + np.array([0.0, -0.03, -0.03])  # back, near the sole
        key = side.upper()
        found[f"{key}BigToe"] = int(_nearest(parts, f"{prefix}_foot", big)[0])
        found[f"{key}SmallToe"] = int(_nearest(parts, f"{prefix}_foot", small)[0])
        found[f"{key}Heel"] = int(_nearest(parts, f"{prefix}_foot", heel)[0])
    return found


@lru_cache(maxsize=1)
def vertex_order() -> np.ndarray:
    """``order[final] = natural``: puts each smplx landmark vertex at its reserved index.

    Chosen on the neutral body, so every toy model (any seed or gender) shares one order."""
    _, _, parts = assemble(Proportions())
    natural = smplx_landmarks(parts)
    reserved = SMPLX_VERTEX_IDS["smplh"]
    order = np.full(NUM_VERTICES, -1, dtype=np.int64)
    for key, final in reserved.items():
        order[final] = natural[key]
    taken = np.zeros(NUM_VERTICES, bool)
    taken[order[order >= 0]] = True
    order[order < 0] = np.flatnonzero(~taken)
    return order
