"""Stage, film and render one mini-world sequence: a subject doing an action, a camera, a scene.

Frames: the ground (world) frame is the motion generator's (y up, metres); cameras are
OpenCV (x right, y down, z forward) with world -> camera ``X_c = R X_w + t``. SMPL parameters
are stored in the camera frame, as GTA-Human and 3DPW store them. SMPL rotates the body about
its rest pelvis joint J0 (not the origin), so moving a posed body by (R, t) turns its
parameters into ``global_orient_c = R R_root`` and ``transl_c = R (J0 + transl_w) + t - J0``
(`params_in_camera`). Rendering uses the world-frame body moved by (R, t), so that
the stored parameters are checked, not assumed, by reproducing the rendered vertices.
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.ndimage import gaussian_filter1d
from scipy.spatial.transform import Rotation

from gtahuman.body.conventions import convert_keypoints
from gtahuman.body.smpl import BodyModel
from gtahuman.miniworld import scenes
from gtahuman.miniworld.domains import LOCATION_TAGS, DomainStyle, Subject, vertex_colors
from gtahuman.miniworld.game_skeleton import GameRig, game_joints, global_rotations
from gtahuman.miniworld.clips import generate_sequence
from gtahuman.miniworld.render import Light, render_scene
from gtahuman.miniworld.visibility import joint_visibility, occlusion_flags

WORLD_UP = np.array([0.0, 1.0, 0.0])
# A joint sits inside the body: the surface in front of it is up to ~0.1 m closer (pelvis
# and spine seen from the front). Only a surface further in front than this hides it.
SELF_OCCLUSION_TOLERANCE = 0.12
MIN_CAMERA_HEIGHT = 0.3  # metres above the ground
MIN_OCCLUDER_ROOM = 2.0  # metres of ground between camera and person needed to stand occluders in


def intrinsics(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K from the vertical field of view, principal point (W/2, H/2): the matrix the
    GTA-Human reader derives from ``fov`` and the JPEG size (and the renderer samples pixel
    (r, c) at image point (c, r), consistently)."""
    focal = (height / 2.0) / np.tan(np.deg2rad(fov_deg) / 2.0)
    return np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])


def look_at(eye: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R (..., 3, 3), t (..., 3)) of cameras at ``eye`` looking at ``target``,
    level (no roll): camera x is horizontal, camera y points down the world's up axis."""
    eye, target = np.asarray(eye, dtype=np.float64), np.asarray(target, dtype=np.float64)
    forward = target - eye
    forward = forward / np.linalg.norm(forward, axis=-1, keepdims=True)
    right = np.cross(forward, WORLD_UP)
    right = right / np.linalg.norm(right, axis=-1, keepdims=True)
    down = np.cross(forward, right)
    rotation = np.stack([right, down, forward], axis=-2)
    return rotation, -np.einsum("...ij,...j->...i", rotation, eye)


def direction(elevation_deg: np.ndarray, azimuth_deg: np.ndarray) -> np.ndarray:
    """Unit vectors (..., 3) at ``elevation`` above the horizon and ``azimuth`` about +y."""
    el, az = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    return np.stack([np.cos(el) * np.sin(az), np.sin(el), np.cos(el) * np.cos(az)], axis=-1)


def params_in_camera(global_orient_w: np.ndarray, transl_w: np.ndarray, rotation: np.ndarray,
                     translation: np.ndarray, pelvis_rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World-frame SMPL (global_orient (T, 3) axis-angle, transl (T, 3)) -> camera frame.

    ``pelvis_rest`` is J0 of the shaped rest body (SMPL's centre of rotation)."""
    root = Rotation.from_rotvec(np.asarray(global_orient_w, dtype=np.float64)).as_matrix()
    orient = Rotation.from_matrix(rotation @ root).as_rotvec()
    j0 = np.asarray(pelvis_rest, dtype=np.float64)
    transl = np.einsum("tij,tj->ti", rotation, j0 + transl_w) + translation - j0
    return orient, transl


@dataclass
class CameraTrack:
    rotation: np.ndarray  # (T, 3, 3) world -> camera
    translation: np.ndarray  # (T, 3)
    K: np.ndarray  # (3, 3)
    size: tuple[int, int]  # (W, H)
    elevation_deg: float  # the sequence's nominal camera elevation
    distance: float  # nominal camera distance to the pelvis, metres


def place_camera(style: DomainStyle, rng: np.random.Generator, pelvis_w: np.ndarray, body_height: float,
                 elevation_quantile: float, size: tuple[int, int], placement: int | None = None) -> CameraTrack:
    """A fixed camera framing the whole trajectory (orbiting it at up to ``style.orbit_deg_per_s``),
    or a hand-held one following the person. ``placement`` (of ``style.camera_placements``): one
    of a studio's fixed cameras, whose world azimuth is set by the placement (H36M's four)."""
    width, height = size
    K = intrinsics(style.fov_deg, width, height)
    focal, tan_half_w, tan_half_h = K[0, 0], (width / 2) / K[0, 0], (height / 2) / K[0, 0]
    frames = len(pelvis_w)
    elevation = float(style.elevation.quantile(elevation_quantile))
    azimuth = rng.uniform(-180.0, 180.0)
    if placement is not None:
        azimuth = 45.0 + 360.0 * placement / max(style.camera_placements, 1)
    distance = focal * body_height / rng.uniform(*style.person_height_px)
    if not style.moving_camera:
        low, high = pelvis_w[:, [0, 2]].min(axis=0), pelvis_w[:, [0, 2]].max(axis=0)
        centre = 0.5 * (low + high)
        reach = float(np.linalg.norm(pelvis_w[:, [0, 2]] - centre, axis=1).max()) + 0.5
        # The trajectory (plus an arm's span) and a standing body must fit in the view.
        distance = max(distance, reach / (0.85 * tan_half_w) + reach, 0.65 * body_height / (0.85 * tan_half_h))
        target = np.array([centre[0], pelvis_w[:, 1].mean(), centre[1]])
        # Cameras stay above the ground: a far camera cannot look up from too low.
        lowest = np.rad2deg(np.arcsin(np.clip((MIN_CAMERA_HEIGHT - target[1]) / distance, -1.0, 1.0)))
        elevation = max(elevation, float(lowest))
        # An orbit (game cameras) circles the trajectory's centre at a constant rate and height.
        rate = rng.uniform(-1.0, 1.0) * style.orbit_deg_per_s if style.orbit_deg_per_s > 0 else 0.0
        azimuths = azimuth + rate * np.arange(frames) / 30.0
        eye = target + distance * direction(np.full(frames, elevation), azimuths)
        sideways = np.cross(direction(np.zeros(frames), azimuths), WORLD_UP)
        aim = target + style.off_centre * rng.uniform(-1, 1) * distance * tan_half_w * sideways
        rotation, translation = look_at(eye, aim)
        return CameraTrack(rotation, translation, K, size, elevation, distance)
    # Hand-held: the operator keeps the person centred, drifts around them, and shakes a little.
    times = np.arange(frames) / 30.0
    smooth = lambda x, s: gaussian_filter1d(x, s, axis=0, mode="nearest")
    target = smooth(pelvis_w, 6.0) + smooth(rng.normal(0, 0.04, (frames, 3)), 3.0)
    azimuths = azimuth + rng.uniform(-25.0, 25.0) * times + 3.0 * np.sin(rng.uniform(1, 3) * times)
    elevations = elevation + 2.0 * np.sin(rng.uniform(0.5, 2.0) * times + rng.uniform(0, 6.3))
    distances = distance * (1.0 + 0.08 * np.sin(rng.uniform(0.3, 1.0) * times + rng.uniform(0, 6.3)))
    eye = target + distances[:, None] * direction(elevations, azimuths)
    eye = eye + smooth(rng.normal(0, 0.03, (frames, 3)), 2.0)
    rotation, translation = look_at(eye, target)
    return CameraTrack(rotation, translation, K, size, elevation, distance)


def light_direction_in_world(light: Light, rotation: np.ndarray) -> np.ndarray:
    """`scenes` give lights in the frame of a level camera; this is the world direction of
    ``light`` for a camera with world -> camera ``rotation`` (its heading, without its pitch)."""
    forward = rotation[2]
    level = np.array([forward[0], 0.0, forward[2]])
    level_rotation, _ = look_at(np.zeros(3), level / max(np.linalg.norm(level), 1e-9))
    return level_rotation.T @ np.asarray(light.direction)


def light_in_camera(light: Light, direction_w: np.ndarray, rotation: np.ndarray) -> Light:
    """``light`` shining from the fixed world direction ``direction_w``, seen by a camera."""
    return Light(direction=tuple(float(x) for x in rotation @ direction_w), color=light.color,
                 ambient=light.ambient, diffuse=light.diffuse)


@dataclass
class SequenceSpec:
    """Everything that fixes one sequence; ``seed_key`` seeds its random generator."""

    seq_name: str
    style: DomainStyle
    subject: Subject
    action: str
    num_frames: int
    elevation_quantile: float
    size: tuple[int, int]
    seed_key: tuple[int, ...]
    with_occluders: bool = False
    placement: int | None = None  # which of the style's fixed studio cameras films it


@dataclass
class SequenceData:
    """One rendered sequence: images, camera-frame SMPL, joints, flags, boxes, scene tags."""

    spec: SequenceSpec
    images: np.ndarray  # (T, H, W, 3) uint8
    K: np.ndarray
    camera: CameraTrack
    global_orient: np.ndarray  # (T, 3) axis-angle, camera frame
    body_pose: np.ndarray  # (T, 69)
    transl: np.ndarray  # (T, 3) camera frame
    joints54: np.ndarray  # (T, 54, 3) camera frame
    game_joints: np.ndarray  # (T, 100, 3) camera frame
    occ: np.ndarray  # (T, 100) bool
    self_occ: np.ndarray  # (T, 100) bool
    in_view24: np.ndarray  # (T, 24) bool, smpl_24 joints inside the image
    bbox_xywh: np.ndarray  # (T, 4) of the amodal body silhouette
    weather: str
    daytime: tuple[int, int, int]
    location_tag: str
    depths: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)  # (body, scene) if kept
    pelvis_rest: np.ndarray | None = None  # (3,) J0 of the shaped rest body (SMPL's centre of rotation)


class BodyModels:
    """One toy/SMPL body model per gender, loaded on first use (one set per process)."""

    def __init__(self, model_dir) -> None:
        self.model_dir, self._models = model_dir, {}

    def __call__(self, gender: str) -> BodyModel:
        if gender not in self._models:
            self._models[gender] = BodyModel(self.model_dir, gender)
        return self._models[gender]

    @staticmethod
    def part_labels(model: BodyModel) -> np.ndarray:
        """(V,) the joint that moves each vertex most (SMPL or toy alike): the body part."""
        return model.smpl.lbs_weights.argmax(dim=1).numpy()


def _silhouette_box(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return np.zeros(4)
    return np.array([cols[0], rows[0], cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1], dtype=np.float64)


def _scene_tags(style: DomainStyle, rng: np.random.Generator) -> tuple[str, tuple[int, int, int], str]:
    weights = np.asarray(style.weather_weights, dtype=np.float64)
    weather = str(rng.choice(style.weathers, p=weights / weights.sum()))
    seconds = int(rng.uniform(*style.daytime_hours) * 3600) % 86400
    daytime = (seconds // 3600, seconds // 60 % 60, seconds % 60)
    return weather, daytime, str(rng.choice(LOCATION_TAGS)) if style.background == "outdoor" else "studio"


def _backgrounds(style, rng, camera: CameraTrack, weather, daytime):
    """Per-frame background crops: one image for a fixed camera, a panorama panned with a
    moving camera's yaw and pitch."""
    width, height = camera.size
    if style.background == "indoor":
        image = scenes.indoor_background(rng, width, height)
        return lambda t: image
    forward = camera.rotation[:, 2]
    yaw, pitch = np.arctan2(forward[:, 0], forward[:, 2]), np.arcsin(np.clip(forward[:, 1], -1, 1))
    # Turning left (yaw up) moves the view left in the panorama; looking up moves it up.
    du = np.rint(-camera.K[0, 0] * np.unwrap(yaw - yaw[0])).astype(int)
    dv = np.rint(-camera.K[1, 1] * (pitch - pitch[0])).astype(int)
    du, dv = du - du.min(), dv - dv.min()
    panorama = scenes.outdoor_background(rng, width + int(du.max()), height + int(dv.max()), daytime, weather)
    return lambda t: panorama[dv[t]:dv[t] + height, du[t]:du[t] + width]


@dataclass
class Staging:
    """A sequence before rendering: the motion, the camera and the camera-frame SMPL. ``rng`` is
    the sequence's generator, left where rendering continues drawing from it."""

    rng: np.random.Generator
    model: BodyModel
    rest_joints: np.ndarray  # (54, 3) of the shaped rest body; [0] is SMPL's centre of rotation
    rest_vertices: np.ndarray
    vertices_w: np.ndarray  # (T, V, 3) ground frame
    joints54_w: np.ndarray  # (T, 54, 3) ground frame
    body_pose: np.ndarray  # (T, 23, 3)
    camera: CameraTrack
    global_orient: np.ndarray  # (T, 3) camera frame
    transl: np.ndarray  # (T, 3) camera frame


def stage_sequence(spec: SequenceSpec, bodies: BodyModels) -> Staging:
    """Move the subject and place the camera (no pixels): what `simulate_sequence` renders, and
    all that the world's diversity figures need."""
    rng = np.random.default_rng(list(spec.seed_key))
    style, subject = spec.style, spec.subject
    model = bodies(subject.gender)
    betas = torch.as_tensor(subject.betas, dtype=torch.float32)[None]
    with torch.no_grad():
        rest = model(betas, torch.zeros(1, 69), torch.zeros(1, 3))
        rest_joints = rest.joints[0].double().numpy()
        rest_vertices = rest.vertices[0].double().numpy()
        clip = generate_sequence(spec.action, spec.num_frames, rng, rest_joints=rest_joints,
                                 turn_rate=float(np.deg2rad(style.turn_rate_deg)))
        pose = torch.as_tensor(clip.pose).reshape(spec.num_frames, 72)
        world = model(betas, pose[:, 3:], pose[:, :3], torch.as_tensor(clip.root_translation))
    vertices_w, joints54_w = world.vertices.double().numpy(), world.joints54.double().numpy()
    body_height = float(np.ptp(rest_vertices[:, 1]))
    camera = place_camera(style, rng, joints54_w[:, 0], body_height, spec.elevation_quantile, spec.size,
                          spec.placement)
    orient_c, transl_c = params_in_camera(clip.pose[:, 0], clip.root_translation, camera.rotation,
                                          camera.translation, rest_joints[0])
    return Staging(rng=rng, model=model, rest_joints=rest_joints, rest_vertices=rest_vertices,
                   vertices_w=vertices_w, joints54_w=joints54_w, body_pose=clip.pose[:, 1:], camera=camera,
                   global_orient=orient_c, transl=transl_c)


def simulate_sequence(spec: SequenceSpec, bodies: BodyModels, keep_depth: bool = False) -> SequenceData:
    """Generate, film and render ``spec`` (deterministic in ``spec.seed_key``)."""
    stage = stage_sequence(spec, bodies)
    rng, model, camera = stage.rng, stage.model, stage.camera
    style, subject = spec.style, spec.subject
    rest_joints, rest_vertices, joints54_w = stage.rest_joints, stage.rest_vertices, stage.joints54_w
    R, t = camera.rotation, camera.translation
    vertices_c = np.einsum("tij,tvj->tvi", R, stage.vertices_w) + t[:, None]
    joints54_c = np.einsum("tij,tvj->tvi", R, joints54_w) + t[:, None]
    orient_c, transl_c = stage.global_orient, stage.transl
    # The game's own rig (issue 24): the subject's offsets from a stream of its own, so that the
    # rest of the sequence draws what it drew before the rig existed.
    rig = GameRig.draw(np.random.default_rng([zlib.crc32(subject.name.encode()), 24]))
    rotations_c = global_rotations(orient_c, stage.body_pose.reshape(stage.body_pose.shape[0], 69), model.parents)
    game_c = game_joints(joints54_c, rotations_c, rig)
    smpl24_c = convert_keypoints(joints54_c, "smpl_54", "smpl_24")[0]

    weather, daytime, location = _scene_tags(style, rng)
    # A studio camera sees the same room and lights in every sequence it films.
    scene_rng = rng if spec.placement is None else np.random.default_rng([spec.seed_key[0], 97, spec.placement])
    if style.background == "indoor":
        base_light = scenes.indoor_light(scene_rng)
    else:
        base_light = scenes.outdoor_light(daytime, weather, rng)
    light_w = light_direction_in_world(base_light, R[0])  # the sun stays put as a camera pans
    background = _backgrounds(style, scene_rng, camera, weather, daytime)
    occluders = []
    feet_w = np.array([joints54_w[:, 0, 0].mean(), 0.0, joints54_w[:, 0, 2].mean()])
    eye_w = -R[0].T @ t[0]
    if spec.with_occluders and np.hypot(*(eye_w - feet_w)[[0, 2]]) >= MIN_OCCLUDER_ROOM:
        count = int(rng.integers(1, style.max_occluders + 1))
        occluders = scenes.place_occluders(rng, R[0] @ feet_w + t[0], count, up_cam=tuple(R[0] @ WORLD_UP))
    colors = vertex_colors(subject, bodies.part_labels(model), rest_vertices, rest_joints)
    width, height = spec.size
    frames = spec.num_frames
    images = np.empty((frames, height, width, 3), np.uint8)
    occ, self_occ = np.zeros((frames, 100), bool), np.zeros((frames, 100), bool)
    in_view, boxes, depths = np.zeros((frames, 24), bool), np.zeros((frames, 4)), []
    for i in range(frames):
        render = render_scene(vertices_c[i], model.faces, camera.K, width, height, vertex_colors=colors,
                              occluders=occluders, light=light_in_camera(base_light, light_w, R[i]),
                              background=background(i))
        image = render.scene.image
        if weather != "clear" and style.background == "outdoor":
            image = scenes.apply_weather(rng, image, weather)
        images[i] = image
        occ[i], self_occ[i] = occlusion_flags(game_c[i], render.body_depth, render.scene.depth, camera.K,
                                              SELF_OCCLUSION_TOLERANCE)
        in_view[i] = joint_visibility(smpl24_c[i], render.scene.depth, camera.K)[0]
        boxes[i] = _silhouette_box(render.body_full_mask)
        if keep_depth:
            depths.append((render.body_depth, render.scene.depth))
    return SequenceData(
        spec=spec, images=images, K=camera.K, camera=camera, global_orient=orient_c.astype(np.float32),
        body_pose=stage.body_pose.reshape(frames, 69).astype(np.float32), transl=transl_c.astype(np.float32),
        joints54=joints54_c, game_joints=game_c, occ=occ, self_occ=self_occ, in_view24=in_view,
        bbox_xywh=boxes, weather=weather, daytime=daytime, location_tag=location, depths=depths,
        pelvis_rest=rest_joints[0])
