"""Geometry of the toy body: capped tubes around bones, laid out by body proportions.

The toy body is a set of closed tubes (an elliptical cross-section swept along a polyline,
closed by half-ellipsoid caps): torso, neck, head, and per side a leg, a foot, an arm
(collar to knuckles, the palm included), four fingers and a thumb. The right side is the
mirror image of the left. Topology (ring counts, vertex order, faces) never depends on the
proportions; only positions do, so shape blend shapes are plain position differences.

Every joint of SMPL's kinematic tree sits at a control point of some tube, where a ring of
vertices is centred exactly on it: the average of that ring *is* the joint, for any shape.
That is what makes a simple ring-average J_regressor exact (see `toy.py`).

Frame: SMPL canonical (y up, the body faces +z, its left on +x), metres, T-pose.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

# --- tube meshes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TubeTopology:
    """What stays fixed for a tube: ring counts, vertices per ring, cap rings."""

    rings_per_segment: tuple[int, ...]  # rings from control point k up to (not incl.) k+1
    around: int
    cap_rings: tuple[int, int]  # (start, end), each cap also has one pole vertex

    @property
    def num_rings(self) -> int:
        return sum(self.rings_per_segment) + 1 + sum(self.cap_rings)

    @property
    def num_vertices(self) -> int:
        return self.num_rings * self.around + 2


@dataclass
class TubeShape:
    """Where a tube is: control points (K,3), cross-section radii (K,2) along (u, w)."""

    points: np.ndarray
    radii: np.ndarray
    up: tuple[float, float, float]  # u = the part of `up` perpendicular to the axis
    cap_lengths: tuple[float, float]
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)  # only used when K == 1


@dataclass
class TubeMesh:
    vertices: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3), local indices, outward (counter-clockwise seen from outside)
    arc: np.ndarray  # (n,) arc length of the vertex's ring centre along the axis
    radial: np.ndarray  # (n, 3) unit outward direction in the ring plane
    point_rings: list[np.ndarray]  # local vertex indices of the ring at each control point
    point_arc: np.ndarray  # (K,) arc length of each control point
    end_cap_ring: np.ndarray  # local indices of the ring next to the end pole


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _smooth(a: np.ndarray, b: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Cosine interpolation (zero slope at both control points: rounded muscle shapes)."""
    s = (1.0 - np.cos(np.pi * f)) / 2.0
    return a + (b - a) * s[:, None]


def tube_mesh(topo: TubeTopology, shape: TubeShape) -> TubeMesh:
    points = np.asarray(shape.points, dtype=np.float64)
    radii = np.asarray(shape.radii, dtype=np.float64)
    k = len(points)
    if len(topo.rings_per_segment) != k - 1:
        raise ValueError("rings_per_segment needs one entry per segment")
    if k == 1:
        seg_dirs = np.asarray([shape.axis], dtype=np.float64)
        point_tangents = _unit(seg_dirs)
        seg_len = np.zeros(0)
    else:
        seg = points[1:] - points[:-1]
        seg_len = np.linalg.norm(seg, axis=1)
        seg_dirs = seg / seg_len[:, None]
        # at inner control points the ring lies in the bisecting plane of the two segments
        point_tangents = np.vstack(
            [seg_dirs[:1], _unit(seg_dirs[:-1] + seg_dirs[1:]), seg_dirs[-1:]])
    point_arc = np.concatenate([[0.0], np.cumsum(seg_len)])

    centres, tangents, ring_radii, arcs, point_ring_ids = [], [], [], [], []
    n_start, n_end = topo.cap_rings
    len_start, len_end = shape.cap_lengths
    # start cap: half ellipsoid, rings from the pole side inwards
    for m in range(1, n_start + 1):
        phi = 0.5 * np.pi * m / (n_start + 1)
        d = len_start * np.cos(phi)
        centres.append(points[0] - point_tangents[0] * d)
        tangents.append(point_tangents[0])
        ring_radii.append(radii[0] * np.sin(phi))
        arcs.append(-d)
    for seg_id, n_rings in enumerate(topo.rings_per_segment):
        f = np.arange(n_rings) / n_rings
        cs = points[seg_id] + f[:, None] * (points[seg_id + 1] - points[seg_id])
        ts = _unit((1 - f)[:, None] * point_tangents[seg_id]
                   + f[:, None] * point_tangents[seg_id + 1])
        rs = _smooth(radii[seg_id], radii[seg_id + 1], f)
        point_ring_ids.append(len(centres))
        centres.extend(cs)
        tangents.extend(ts)
        ring_radii.extend(rs)
        arcs.extend(point_arc[seg_id] + f * seg_len[seg_id])
    point_ring_ids.append(len(centres))
    centres.append(points[-1])
    tangents.append(point_tangents[-1])
    ring_radii.append(radii[-1])
    arcs.append(point_arc[-1])
    for m in range(n_end, 0, -1):
        phi = 0.5 * np.pi * m / (n_end + 1)
        d = len_end * np.cos(phi)
        centres.append(points[-1] + point_tangents[-1] * d)
        tangents.append(point_tangents[-1])
        ring_radii.append(radii[-1] * np.sin(phi))
        arcs.append(point_arc[-1] + d)

    centres, tangents = np.asarray(centres), np.asarray(tangents)
    ring_radii, arcs = np.asarray(ring_radii), np.asarray(arcs)
    up = np.asarray(shape.up, dtype=np.float64)
    u = _unit(up - (tangents @ up)[:, None] * tangents)
    w = np.cross(tangents, u)
    theta = 2.0 * np.pi * np.arange(topo.around) / topo.around
    cos, sin = np.cos(theta)[None, :, None], np.sin(theta)[None, :, None]
    radial = cos * u[:, None, :] + sin * w[:, None, :]  # (R, A, 3)
    ring_vertices = (centres[:, None, :] + cos * ring_radii[:, None, 0, None] * u[:, None, :]
                     + sin * ring_radii[:, None, 1, None] * w[:, None, :])
    pole_start = points[0] - point_tangents[0] * len_start
    pole_end = points[-1] + point_tangents[-1] * len_end
    n_rings, around = len(centres), topo.around
    vertices = np.vstack([pole_start, ring_vertices.reshape(-1, 3), pole_end])
    arc = np.concatenate([[-len_start], np.repeat(arcs, around), [point_arc[-1] + len_end]])
    radial_all = np.vstack([-point_tangents[0], radial.reshape(-1, 3), point_tangents[-1]])

    ring = lambda r: 1 + r * around + np.arange(around)  # noqa: E731
    nxt = lambda r: 1 + r * around + (np.arange(around) + 1) % around  # noqa: E731
    faces = [np.stack([np.zeros(around, int), nxt(0), ring(0)], axis=1)]
    for r in range(n_rings - 1):
        faces.append(np.stack([ring(r), nxt(r), nxt(r + 1)], axis=1))
        faces.append(np.stack([ring(r), nxt(r + 1), ring(r + 1)], axis=1))
    last = np.full(around, len(vertices) - 1)
    faces.append(np.stack([ring(n_rings - 1), nxt(n_rings - 1), last], axis=1))
    return TubeMesh(
        vertices=vertices, faces=np.vstack(faces).astype(np.int64), arc=arc, radial=radial_all,
        point_rings=[ring(r) for r in point_ring_ids], point_arc=point_arc,
        end_cap_ring=ring(n_rings - 1),
    )


# --- body proportions -----------------------------------------------------------------------


@dataclass(frozen=True)
class Proportions:
    """Multiplicative body proportions (1.0 = the neutral toy body)."""

    stature: float = 1.0  # all positions scale about the origin
    girth: float = 1.0  # cross-section radii of torso and limbs
    leg_length: float = 1.0
    torso_length: float = 1.0
    shoulder_width: float = 1.0
    hip_width: float = 1.0
    arm_length: float = 1.0
    head_size: float = 1.0
    neck_length: float = 1.0
    chest_depth: float = 1.0
    hand_foot_size: float = 1.0

    def shifted(self, **deltas: float) -> "Proportions":
        return replace(self, **{k: getattr(self, k) + v for k, v in deltas.items()})


# Rest joints of the neutral toy (left side and centre), close to SMPL's neutral template.
NEUTRAL_JOINTS: dict[str, tuple[float, float, float]] = {
    "pelvis": (0.0, -0.235, 0.02), "left_hip": (0.065, -0.325, 0.015),
    "spine_1": (0.0, -0.125, 0.0), "left_knee": (0.10, -0.715, 0.01),
    "spine_2": (0.0, 0.005, 0.025), "left_ankle": (0.085, -1.115, -0.035),
    "spine_3": (0.0, 0.06, 0.025), "left_foot": (0.115, -1.18, 0.09),
    "neck": (0.0, 0.27, -0.01), "left_collar": (0.075, 0.185, -0.005),
    "head": (0.0, 0.34, 0.035), "left_shoulder": (0.17, 0.22, -0.015),
    "left_elbow": (0.43, 0.21, -0.035), "left_wrist": (0.68, 0.215, -0.035),
    "left_hand": (0.765, 0.205, -0.045),
}
_UPPER_BODY = ("spine_1", "spine_2", "spine_3", "neck", "left_collar", "head", "left_shoulder",
               "left_elbow", "left_wrist", "left_hand")


def skeleton(p: Proportions) -> dict[str, np.ndarray]:
    """Left/centre joint positions for proportions ``p`` (each step keeps children attached)."""
    j = {name: np.array(pos) for name, pos in NEUTRAL_JOINTS.items()}
    pelvis_y = j["pelvis"][1]
    for name in _UPPER_BODY:
        j[name][1] = pelvis_y + (j[name][1] - pelvis_y) * p.torso_length
    j["head"] = j["neck"] + (j["head"] - j["neck"]) * p.neck_length
    shoulder_shift = j["left_shoulder"][0] * (p.shoulder_width - 1.0)
    j["left_collar"][0] *= p.shoulder_width
    for name in ("left_shoulder", "left_elbow", "left_wrist", "left_hand"):
        j[name][0] += shoulder_shift
    for name in ("left_elbow", "left_wrist", "left_hand"):
        j[name] = j["left_shoulder"] + (j[name] - j["left_shoulder"]) * p.arm_length
    hip_shift = j["left_hip"][0] * (p.hip_width - 1.0)
    for name in ("left_hip", "left_knee", "left_ankle", "left_foot"):
        j[name][0] += hip_shift
    ankle_before = j["left_ankle"].copy()
    for name in ("left_knee", "left_ankle"):
        j[name] = j["left_hip"] + (j[name] - j["left_hip"]) * p.leg_length
    j["left_foot"] = j["left_foot"] + (j["left_ankle"] - ankle_before)
    j["left_hand"] = j["left_wrist"] + (j["left_hand"] - j["left_wrist"]) * p.hand_foot_size
    j["left_foot"] = j["left_ankle"] + (j["left_foot"] - j["left_ankle"]) * p.hand_foot_size
    return {name: pos * p.stature for name, pos in j.items()}


def _lerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return a + (b - a) * t


# Finger layout, left hand: (z offset of the root from the hand joint, length, radius).
FINGERS = {"index": (0.030, 0.075, 0.0085), "middle": (0.010, 0.085, 0.0088),
           "ring": (-0.010, 0.078, 0.0083), "pinky": (-0.028, 0.062, 0.0075)}


def part_shapes(p: Proportions) -> dict[str, TubeShape]:
    """Tube shapes of the centre parts and the left-side parts."""
    j = skeleton(p)
    s = p.stature
    limb = p.girth * (1.0 + 0.5 * (s - 1.0))  # taller bodies are a little thicker too
    hf = p.hand_foot_size * s
    up = (0.0, 1.0, 0.0)
    x_axis = (1.0, 0.0, 0.0)
    shapes: dict[str, TubeShape] = {}

    torso_pts = np.array([
        j["pelvis"] + np.array([0.0, -0.145, -0.02]) * s, j["pelvis"], j["spine_1"],
        _lerp(j["spine_1"], j["spine_2"], 0.7), j["spine_2"], j["spine_3"],
        _lerp(j["spine_3"], j["neck"], 0.667), _lerp(j["spine_3"], j["neck"], 0.833)])
    width = np.array([0.14, 0.165, 0.145, 0.145, 0.15, 0.155, 0.16, 0.14])
    width *= np.array([p.hip_width] * 2 + [1.0] * 3 + [p.shoulder_width] * 3) ** 0.8
    depth = np.array([0.09, 0.105, 0.095, 0.10, 0.10, 0.105, 0.095, 0.075]) * p.chest_depth
    shapes["torso"] = TubeShape(torso_pts, np.stack([width, depth], 1) * limb, x_axis,
                                (0.05 * s, 0.04 * s))

    head_scale = p.head_size * (1.0 + 0.3 * (s - 1.0))
    shapes["neck"] = TubeShape(np.array([
        j["neck"] + np.array([0.0, -0.08, 0.005]) * s,
        j["neck"] + np.array([0.0, -0.025, 0.005]) * s,
        j["neck"], j["head"], j["head"] + np.array([0.0, 0.045, 0.005]) * s * head_scale]),
        np.array([[0.055, 0.05], [0.055, 0.05], [0.052, 0.048], [0.05, 0.048],
                  [0.045, 0.045]]) * limb,
        x_axis, (0.02 * s, 0.02 * s))
    shapes["head"] = TubeShape(
        (j["head"] + np.array([0.0, 0.065, -0.015]) * s * head_scale)[None],
        np.array([[0.078, 0.095]]) * head_scale, x_axis, (0.105 * head_scale, 0.11 * head_scale))

    hip, knee, ankle = j["left_hip"], j["left_knee"], j["left_ankle"]
    shapes["left_leg"] = TubeShape(np.array([
        hip + np.array([0.0, 0.06, 0.0]) * s, hip, _lerp(hip, knee, 0.08), _lerp(hip, knee, 0.5),
        knee, _lerp(knee, ankle, 0.3), ankle]),
        np.array([[0.075, 0.075], [0.078, 0.085], [0.072, 0.08], [0.062, 0.068], [0.048, 0.05],
                  [0.052, 0.055], [0.033, 0.035]]) * limb, x_axis, (0.03 * s, 0.03 * s))
    foot = j["left_foot"]
    shapes["left_foot"] = TubeShape(np.array([
        ankle + np.array([0.0, -0.04, -0.025]) * hf, ankle + np.array([0.01, -0.045, 0.055]) * hf,
        foot, foot + np.array([0.005, -0.01, 0.06]) * hf]),
        np.array([[0.045, 0.033], [0.04, 0.042], [0.025, 0.048], [0.015, 0.042]]) * hf
        * limb ** 0.3, up, (0.035 * hf, 0.025 * hf))

    shoulder, elbow, wrist, hand = (j[n] for n in ("left_shoulder", "left_elbow", "left_wrist",
                                                     "left_hand"))
    arm_radii = np.array([[0.045, 0.05], [0.055, 0.058], [0.045, 0.045], [0.036, 0.038],
                          [0.038, 0.042], [0.022, 0.03], [0.014, 0.046]])
    arm_radii[:5] *= limb
    arm_radii[5:] *= np.array([[limb ** 0.5], [hf]])
    shapes["left_arm"] = TubeShape(np.array([
        j["left_collar"], shoulder, _lerp(shoulder, elbow, 0.45), elbow,
        _lerp(elbow, wrist, 0.35), wrist, hand]), arm_radii, up, (0.04 * s, 0.012 * hf))

    for name, (z_offset, length, radius) in FINGERS.items():
        root = hand + np.array([-0.012, 0.0, z_offset]) * hf
        direction = _unit(np.array([1.0, -0.03, 0.6 * z_offset]))
        tip_len = 0.008 * hf
        pts = np.array([root, root + direction * 0.5 * length * hf,
                        root + direction * (length * hf - tip_len)])
        r = np.array([[0.88, 1.0], [0.82, 0.95], [0.72, 0.85]]) * radius
        shapes[f"left_{name}"] = TubeShape(pts, r * p.hand_foot_size, up, (0.006 * hf, tip_len))
    thumb_root = wrist + np.array([0.025, -0.008, 0.028]) * hf
    thumb_dir = _unit(np.array([0.6, -0.25, 0.75]))
    thumb_tip = 0.009 * hf
    shapes["left_thumb"] = TubeShape(
        np.array([thumb_root, thumb_root + thumb_dir * 0.03 * hf,
                  thumb_root + thumb_dir * (0.065 * hf - thumb_tip)]),
        np.array([[0.0105, 0.0115], [0.0095, 0.0100], [0.0082, 0.0088]]) * p.hand_foot_size, up,
        (0.008 * hf, thumb_tip))
    return shapes
