"""Mini-world CPU renderer, visibility flags, backgrounds and lights, against analytic values."""
from __future__ import annotations

import numpy as np
import pytest

from gtahuman.miniworld import render as render_module
from gtahuman.miniworld.visibility import joint_visibility, occlusion_flags
from gtahuman.miniworld.render import (
    Box,
    Light,
    render_mesh,
    render_scene,
)
from gtahuman.miniworld.scenes import (
    WEATHERS,
    apply_weather,
    indoor_background,
    indoor_light,
    outdoor_background,
    outdoor_light,
    place_occluders,
)

W, H = 80, 60
K = np.array([[100.0, 0.0, 40.3], [0.0, 100.0, 30.7], [0.0, 0.0, 1.0]])  # off-centre on purpose
PIXEL_V, PIXEL_U = np.mgrid[0:H, 0:W]


def ray_plane_depth(point: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Camera z where each pixel centre's ray meets the plane (point, normal): (H, W)."""
    rays = np.stack([(PIXEL_U - K[0, 2]) / K[0, 0], (PIXEL_V - K[1, 2]) / K[1, 1], np.ones((H, W))], -1)
    return (normal @ point) / (rays @ normal)  # ray = z * (x/z, y/z, 1)


def quad(corners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(corners, dtype=np.float64), np.array([[0, 1, 2], [0, 2, 3]])


def test_cube_silhouette_matches_the_pinhole_projection():
    box = Box(center=(0.1, -0.05, 5.0), size=(1.0, 1.0, 1.0))
    vertices, faces = box.mesh()
    result = render_mesh(vertices, faces, K, W, H)
    # The silhouette is the front face (z = 4.5): x in [-0.4, 0.6], y in [-0.55, 0.45].
    u_lo, u_hi = 100 * -0.4 / 4.5 + 40.3, 100 * 0.6 / 4.5 + 40.3
    v_lo, v_hi = 100 * -0.55 / 4.5 + 30.7, 100 * 0.45 / 4.5 + 30.7
    expected = (PIXEL_U >= u_lo) & (PIXEL_U <= u_hi) & (PIXEL_V >= v_lo) & (PIXEL_V <= v_hi)
    np.testing.assert_array_equal(result.mask, expected)
    np.testing.assert_allclose(result.depth[expected], 4.5, rtol=1e-6)
    assert np.all(np.isinf(result.depth[~expected])) and np.all(result.face_index[~expected] == -1)
    front = np.flatnonzero(np.abs(vertices[faces].mean(axis=1)[:, 2] - 4.5) < 1e-9)
    assert set(np.unique(result.face_index[expected])) <= set(front)


def test_depth_at_pixel_centres_equals_the_plane_depth():
    corners = np.array([[-3.0, -2.0, 2.0], [3.0, -2.0, 2.0], [3.0, 2.0, 6.0], [-3.0, 2.0, 6.0]])
    result = render_mesh(*quad(corners), K, W, H)
    normal = np.cross(corners[1] - corners[0], corners[2] - corners[0])
    expected = ray_plane_depth(corners[0], normal)
    assert result.mask.all()  # the tilted quad covers the whole image
    np.testing.assert_allclose(result.depth, expected, rtol=2e-6)


def test_nearer_of_two_crossing_triangles_wins_per_pixel():
    flat = np.array([[-2.0, -2.0, 4.0], [2.0, -2.0, 4.0], [0.0, 2.0, 4.0]])
    tilted = np.array([[-1.0, -1.0, 3.0], [1.5, -1.0, 3.0], [0.0, 1.5, 5.0]])  # pierces z = 4
    vertices = np.concatenate([flat, tilted])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    result = render_mesh(vertices, faces, K, W, H)
    # Hand-computed per-pixel depth of each plane, restricted to where each triangle covers.
    alone = [render_mesh(vertices, faces[[i]], K, W, H) for i in (0, 1)]
    depth_flat = np.where(alone[0].mask, ray_plane_depth(flat[0], np.array([0.0, 0.0, 1.0])), np.inf)
    tilted_normal = np.cross(tilted[1] - tilted[0], tilted[2] - tilted[0])
    depth_tilted = np.where(alone[1].mask, ray_plane_depth(tilted[0], tilted_normal), np.inf)
    both = alone[0].mask & alone[1].mask
    assert (both & (depth_tilted < 4.0)).sum() > 20 and (both & (depth_tilted > 4.0)).sum() > 20
    np.testing.assert_allclose(result.depth, np.minimum(depth_flat, depth_tilted), rtol=2e-6)
    winner = np.where(depth_tilted < depth_flat, 1, 0)
    gap = np.zeros((H, W))
    gap[both] = np.abs(depth_tilted[both] - depth_flat[both])
    clear = gap > 1e-3
    np.testing.assert_array_equal(result.face_index[clear], winner[clear])


def test_barycentric_depth_of_one_pixel_by_hand():
    tri = np.array([[-1.0, -1.0, 2.0], [1.0, -1.0, 4.0], [0.0, 1.0, 3.0]])
    result = render_mesh(tri, np.array([[0, 1, 2]]), K, W, H)
    row, col = 27, 36  # a pixel inside the triangle
    ray = np.array([(col - 40.3) / 100.0, (row - 30.7) / 100.0, 1.0])
    # Solve  a*P0 + b*P1 + c*P2 = z*ray  with a + b + c = 1 for (a, b, z); c = 1 - a - b.
    system = np.column_stack([tri[0] - tri[2], tri[1] - tri[2], -ray])
    a, b, z = np.linalg.solve(system, -tri[2])
    assert min(a, b, 1 - a - b) > 0
    assert result.depth[row, col] == pytest.approx(a * 2.0 + b * 4.0 + (1 - a - b) * 3.0, rel=1e-6)
    assert result.depth[row, col] == pytest.approx(z, rel=1e-6)


def test_vertex_colours_interpolate_perspective_correctly():
    corners = np.array([[-3.0, -2.0, 2.0], [3.0, -2.0, 2.0], [3.0, 2.0, 6.0], [-3.0, 2.0, 6.0]])
    colours = np.column_stack([(corners[:, 2] - 2.0) / 4.0, np.zeros(4), np.zeros(4)])  # red = depth
    light = Light(ambient=1.0, diffuse=0.0)
    result = render_mesh(*quad(corners), K, W, H, vertex_colors=colours, light=light)
    expected = np.rint(np.clip((result.depth - 2.0) / 4.0, 0, 1) * 255)
    assert np.abs(result.image[..., 0].astype(float) - expected).max() <= 1


def test_face_facing_the_light_is_brighter_by_lambert():
    light = Light(direction=(0.0, 0.0, -1.0), ambient=0.2, diffuse=0.8)  # light behind the camera
    facing = np.array([[-1.2, -0.5, 5.0], [-0.2, -0.5, 5.0], [-0.2, 0.5, 5.0], [-1.2, 0.5, 5.0]])
    oblique = np.array([[0.2, -0.5, 5.0], [1.2, -0.5, 6.0], [1.2, 0.5, 6.0], [0.2, 0.5, 5.0]])
    vertices = np.concatenate([facing, oblique])
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7]])
    result = render_mesh(vertices, faces, K, W, H, face_colors=np.full((4, 3), 0.5), light=light)
    bright = result.image[result.face_index == 0][:, 0]
    dim = result.image[result.face_index == 2][:, 0]
    cos_oblique = 1.0 / np.sqrt(2.0)  # normal (-1, 0, 1)/sqrt2 against (0, 0, -1)
    assert np.all(bright == round(0.5 * (0.2 + 0.8) * 255))
    assert np.all(dim == round(0.5 * (0.2 + 0.8 * cos_oblique) * 255))


def test_large_faces_split_into_chunks_give_the_same_image(monkeypatch):
    box = Box(center=(0.0, 0.0, 2.0), size=(1.5, 1.2, 1.0), rotation=np.eye(3))
    vertices, faces = box.mesh()
    whole = render_mesh(vertices, faces, K, W, H)
    monkeypatch.setattr(render_module, "_MAX_CANDIDATES", 500)
    chunked = render_mesh(vertices, faces, K, W, H)
    np.testing.assert_array_equal(whole.face_index, chunked.face_index)
    np.testing.assert_array_equal(whole.depth, chunked.depth)


def test_large_face_spans_match_bounding_box_enumeration(monkeypatch):
    rng = np.random.default_rng(3)
    centres = rng.uniform([-1.5, -1.0, 3.0], [1.5, 1.0, 6.0], size=(30, 1, 3))
    scales = rng.choice([0.02, 0.3, 1.5], size=(30, 1, 1))  # slivers, mid-size and huge faces
    vertices = (centres + scales * rng.normal(size=(30, 3, 3))).reshape(-1, 3)
    faces = np.arange(90).reshape(30, 3)
    monkeypatch.setattr(render_module, "_LARGE_FACE_PIXELS", 10**9)  # every face by bounding box
    by_box = render_mesh(vertices, faces, K, W, H)
    monkeypatch.setattr(render_module, "_LARGE_FACE_PIXELS", 0)  # every face by row spans
    by_span = render_mesh(vertices, faces, K, W, H)
    assert by_box.mask.sum() > 1000
    np.testing.assert_array_equal(by_box.face_index, by_span.face_index)
    np.testing.assert_array_equal(by_box.depth, by_span.depth)


def test_background_is_kept_where_empty_and_bad_input_is_named():
    background = np.full((H, W, 3), 17, dtype=np.uint8)
    behind = np.array([[-1.0, -1.0, -2.0], [1.0, -1.0, -2.0], [0.0, 1.0, -2.0]])  # behind the camera
    result = render_mesh(behind, np.array([[0, 1, 2]]), K, W, H, background=background)
    assert not result.mask.any() and np.all(result.image == 17)
    with pytest.raises(ValueError, match="faces must be"):
        render_mesh(behind, np.array([0, 1, 2]), K, W, H)
    with pytest.raises(ValueError, match="background must be"):
        render_mesh(behind, np.array([[0, 1, 2]]), K, W, H, background=background[:10])


def test_joint_behind_an_occluding_quad_is_occluded_and_out_of_view_is_flagged():
    wall = np.array([[-1.0, -1.0, 3.0], [1.0, -1.0, 3.0], [1.0, 1.0, 3.0], [-1.0, 1.0, 3.0]])
    result = render_mesh(*quad(wall), K, W, H)
    joints = np.array([
        [0.0, 0.0, 4.0],  # behind the wall
        [0.0, 0.0, 2.0],  # in front of it
        [0.0, 0.0, 3.02],  # just behind, within the tolerance
        [5.0, 0.0, 3.0],  # projects outside the image
        [0.0, 0.0, -1.0],  # behind the camera
    ])
    in_view, occluded = joint_visibility(joints, result.depth, K, tolerance=0.05)
    np.testing.assert_array_equal(in_view, [True, True, True, False, False])
    np.testing.assert_array_equal(occluded, [True, False, False, False, False])


def test_occlusion_flags_separate_objects_from_the_own_body():
    body_vertices, body_faces = Box(center=(0.0, 0.0, 5.0), size=(1.0, 2.0, 0.6)).mesh()
    occluder = Box(center=(-0.3, 0.0, 3.0), size=(0.6, 3.0, 0.4), color=(0.2, 0.3, 0.9))
    scene = render_scene(body_vertices, body_faces, K, W, H, occluders=[occluder])
    joints = np.array([
        [-0.3, 0.0, 5.0],  # inside the body, behind the occluder: both
        [0.35, 0.0, 5.0],  # inside the body, occluder off to the side: self only
        [0.35, 0.0, 4.65],  # on the body's front surface (4.7 - 0.05): neither
        [-0.3, 0.0, 4.65],  # on the front surface behind the occluder: object only
    ])
    occ, self_occ = occlusion_flags(joints, scene.body_depth, scene.scene.depth, K)
    np.testing.assert_array_equal(occ, [True, False, False, True])
    np.testing.assert_array_equal(self_occ, [True, True, False, False])
    # The occluder hides part of the body: amodal silhouette larger than the visible one.
    assert scene.body_full_mask.sum() > scene.body_mask.sum() > 0
    assert np.all(scene.scene.face_index[scene.body_mask] < scene.num_body_faces)
    # Occluder pixels carry its colour (shaded), body pixels the default grey.
    occluder_pixels = scene.scene.image[scene.scene.mask & ~scene.body_mask]
    assert np.all(occluder_pixels[:, 2] > occluder_pixels[:, 0])


def texture_energy(image: np.ndarray) -> float:
    grey = image.astype(float).mean(axis=2)
    return float(np.abs(np.diff(grey, axis=0)).mean() + np.abs(np.diff(grey, axis=1)).mean())


def test_indoor_and_outdoor_backgrounds_differ_measurably():
    rng = np.random.default_rng(0)
    indoor = [indoor_background(rng, 160, 90) for _ in range(6)]
    outdoor = [outdoor_background(rng, 160, 90, daytime=(10 + 2 * i, 0, 0), weather=WEATHERS[i % 5])
               for i in range(6)]
    assert all(im.shape == (90, 160, 3) and im.dtype == np.uint8 for im in indoor + outdoor)
    indoor_energy = [texture_energy(im) for im in indoor]
    outdoor_energy = [texture_energy(im) for im in outdoor]
    assert min(outdoor_energy) > max(indoor_energy)  # even fog keeps more texture than a studio wall
    assert np.mean(outdoor_energy) > 3.0 * np.mean(indoor_energy)
    # Outdoor colours vary between frames far more than the plain studio walls.
    spread = lambda images: np.std([im.reshape(-1, 3).mean(axis=0) for im in images], axis=0).mean()
    assert spread(outdoor) > 2.0 * spread(indoor)


def test_daytime_and_weather_change_the_outdoor_image_and_light():
    noon = outdoor_background(np.random.default_rng(1), 160, 90, 12.0, "clear")
    night = outdoor_background(np.random.default_rng(1), 160, 90, (23, 30, 0), "clear")
    fog = outdoor_background(np.random.default_rng(1), 160, 90, 12.0, "fog")
    assert night.mean() < 0.5 * noon.mean()
    assert fog.std() < 0.7 * noon.std()
    np.testing.assert_array_equal(noon, outdoor_background(np.random.default_rng(1), 160, 90, 12.0, "clear"))
    day_light, night_light, dusk_light = outdoor_light(12.0, "clear"), outdoor_light(1.0, "clear"), outdoor_light(17.5, "clear")
    assert night_light.ambient + night_light.diffuse < day_light.ambient + day_light.diffuse
    assert dusk_light.color[2] < dusk_light.color[0] - 0.2  # warm
    assert day_light.direction[1] < -0.5  # the noon sun is high (up is -y)
    assert indoor_light().ambient > outdoor_light(12.0, "clear").ambient
    with pytest.raises(ValueError, match="weather must be one of"):
        outdoor_background(np.random.default_rng(0), 16, 9, 12.0, "hail")
    # Weather over a finished frame: fog veils (less contrast), rain adds bright streaks.
    assert apply_weather(np.random.default_rng(0), noon, "fog").std() < 0.8 * noon.std()
    rainy = apply_weather(np.random.default_rng(0), night, "rain")
    assert 0 < (rainy.astype(int).sum(axis=2) > night.astype(int).sum(axis=2) + 60).mean() < 0.05


def test_occluders_stand_on_the_ground_between_camera_and_person():
    feet = np.array([0.3, 1.6, 7.0])  # ground below the person, camera 1.6 m above the ground
    boxes = place_occluders(np.random.default_rng(0), feet, count=12)
    for box in boxes:
        vertices, _ = box.mesh()
        assert vertices[:, 1].max() == pytest.approx(feet[1])  # bottom on the ground (y down)
        assert np.linalg.norm(np.asarray(box.center)[[0, 2]]) < np.linalg.norm(feet[[0, 2]])
        assert vertices[:, 2].min() > 0.4  # in front of the camera
        assert np.linalg.det(box.rotation) == pytest.approx(1.0)


def test_toy_body_walk_matches_smpl_kinematics_and_renders_where_projected(tmp_path):
    """Integration with the toy body: our FK reproduces the body model's joints for a generated
    clip, the feet touch the ground, and the render covers exactly the projected body."""
    torch = pytest.importorskip("torch")
    from scipy.spatial.transform import Rotation

    from gtahuman.body.smpl import BodyModel
    from gtahuman.body.toy import write_toy_body_assets
    from gtahuman.miniworld.clips import generate_sequence
    from gtahuman.miniworld.motion import SMPL_PARENTS, forward_kinematics

    model = BodyModel(write_toy_body_assets(tmp_path / "toy"), "neutral")
    zeros = torch.zeros(1, 69)
    rest = model(torch.zeros(1, 10), zeros, torch.zeros(1, 3)).joints[0].numpy()
    clip = generate_sequence("walk", 30, np.random.default_rng(0), rest_joints=rest, initial_heading=0.0)
    pose = torch.from_numpy(clip.pose)
    out = model(torch.zeros(1, 10), pose[:, 1:].reshape(30, 69), pose[:, 0], torch.from_numpy(clip.root_translation))
    rotmats = Rotation.from_rotvec(clip.pose.reshape(-1, 3)).as_matrix().reshape(30, 24, 3, 3)
    ours = forward_kinematics(SMPL_PARENTS, rest, rotmats) + clip.root_translation[:, None]
    np.testing.assert_allclose(ours, out.joints.numpy(), atol=1e-4)
    assert np.all(np.abs(out.vertices.numpy()[..., 1].min(axis=1)) < 0.06)  # soles near y = 0

    # Camera 4 m in front of the walker (who faces +z), 1 m above the ground, looking back at it.
    to_camera = np.diag([1.0, -1.0, -1.0])
    vertices = (out.vertices[10].numpy() - [0.0, 1.0, 4.0 + clip.root_translation[10, 2]]) @ to_camera.T
    big_k = np.array([[300.0, 0.0, 159.5], [0.0, 300.0, 119.5], [0.0, 0.0, 1.0]])
    result = render_mesh(vertices, model.faces, big_k, 320, 240)
    rows, cols = np.nonzero(result.mask)
    uv = (vertices / vertices[:, 2:]) @ big_k.T
    assert abs(cols.min() - uv[:, 0].min()) <= 1.0 and abs(cols.max() - uv[:, 0].max()) <= 1.0
    assert abs(rows.min() - uv[:, 1].min()) <= 1.0 and abs(rows.max() - uv[:, 1].max()) <= 1.0
    joints_cam = (out.joints[10].numpy() - [0.0, 1.0, 4.0 + clip.root_translation[10, 2]]) @ to_camera.T
    left_hand = (joints_cam[22] / joints_cam[22, 2]) @ big_k.T
    assert left_hand[0] > 159.5  # facing the camera, the body's left appears on the image right
    in_view, occluded = joint_visibility(joints_cam, result.depth, big_k, tolerance=0.05)
    assert in_view.all()
    assert not occluded[[20, 21]].any()  # the wrists face the camera unobstructed
    # The head joint sits ~0.1 m inside the head: hidden by the face at 0.05 m, not at 0.15 m.
    assert occluded[15] and not joint_visibility(joints_cam, result.depth, big_k, tolerance=0.15)[1][15]
