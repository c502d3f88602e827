"""The assembled mini world (tiny size): real readers, geometry, occlusion, domain gap, determinism."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import binary_dilation
from scipy.spatial.transform import Rotation

from gtahuman.body.camera import estimate_translation
from gtahuman.body.conventions import convert_keypoints, get_names, joint_index
from gtahuman.body.smpl import BodyModel
from gtahuman.data.factors import camera_angles
from gtahuman.data.formats import gta_raw
from gtahuman.data.formats.spin_npz import read_spin_npz
from gtahuman.miniworld.__main__ import main as cli_main
from gtahuman.miniworld.domains import INDOOR_ACTIONS, SIZES
from gtahuman.miniworld.game_skeleton import (GAME_LANDMARKS, GAME_OWNERS, GameRig, RigVariation, game_joints,
                                                   global_rotations)
from gtahuman.miniworld.motion import ACTIONS
from gtahuman.miniworld.plan import plan_world
from gtahuman.miniworld.render import project, render_mesh
from gtahuman.miniworld.simulate import SELF_OCCLUSION_TOLERANCE, BodyModels, params_in_camera, simulate_sequence
from gtahuman.miniworld.world import WorldDirectoryError, WorldPaths, generate_world
from gtahuman.miniworld.writers import KEYPOINT_ONLY_JOINTS

SPIN_FILES = ("real_indoor_train", "real_indoor_val", "real_kp_train", "wild_test", "wild_val")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> WorldPaths:
    return generate_world(tmp_path_factory.mktemp("mini") / "world", "tiny", seed=0, progress=False, workers=1)


@pytest.fixture(scope="module")
def manifest(world) -> dict:
    return json.loads(world.manifest.read_text())


@pytest.fixture(scope="module")
def models(world) -> dict[str, BodyModel]:
    return {g: BodyModel(world.body_dir, g) for g in ("male", "female")}


def gta_sequences(world) -> list[gta_raw.GTASequence]:
    return [gta_raw.read_sequence(world.gta_root, name) for name in gta_raw.list_sequences(world.gta_root)]


def body_outputs(model: BodyModel, betas, body_pose, global_orient, transl=None):
    with torch.no_grad():
        return model(torch.as_tensor(betas), torch.as_tensor(body_pose), torch.as_tensor(global_orient),
                     None if transl is None else torch.as_tensor(transl))


def spin_image_root(world, key: str):
    return world.wild_root if key.startswith("wild") else world.real_indoor_root


# --- formats ----------------------------------------------------------------------------------
def test_real_readers_read_every_file_and_every_image_exists(world, manifest):
    sequences = gta_sequences(world)
    assert len(sequences) == SIZES["tiny"].gta_sequences
    for seq in sequences:
        assert seq.image_size == (240, 135) and seq.image_size_source.startswith("header")
        assert seq.fov == 50.0 and seq.num_frames == 12 and seq.keypoints_2d.shape == (12, 100, 3)
        assert all((world.gta_root / p).is_file() for p in seq.image_paths)
        np.testing.assert_allclose(seq.intrinsics, manifest["cameras"]["gta"]["intrinsics"], rtol=1e-6)
        assert seq.bbox_keep.any()
    for key in SPIN_FILES:
        data = read_spin_npz(getattr(world, key))
        assert len(data) == manifest["files"][key]["samples"] > 0
        assert all((spin_image_root(world, key) / name).is_file() for name in data.imgname)
        assert set(np.unique(data.part[..., 2])) <= {0.0, 1.0}
        # SPIN's box: square, 1.2 x the extent of the labelled joints, scale = side / 200.
        visible = data.part[..., 2:] > 0
        low = np.where(visible, data.part[..., :2], np.inf).min(axis=1)
        high = np.where(visible, data.part[..., :2], -np.inf).max(axis=1)
        np.testing.assert_allclose(data.center, (low + high) / 2, atol=1e-3)
        np.testing.assert_allclose(data.scale * 200, 1.2 * (high - low).max(axis=1), rtol=1e-5)
        if key == "real_kp_train":  # 2D only, LSP/COCO joints only
            assert data.pose is None and data.S is None and np.all(data.has_smpl == 0)
            labelled = np.isin(np.array(get_names("smpl_24")), KEYPOINT_ONLY_JOINTS)
            assert np.all(data.part[:, ~labelled] == 0) and data.part[:, labelled, 2].mean() > 0.8
        else:
            assert np.all(data.has_smpl == 1) and data.pose.shape[1] == 72 and set(data.gender) <= {0, 1}
            assert (data.S is not None) == key.startswith("real")
    assert read_spin_npz(world.wild_test).imgname[0].startswith("imageFiles/")


# --- geometry ---------------------------------------------------------------------------------
def test_params_in_camera_accounts_for_the_rest_pelvis(models):
    """Moving a posed body by (R, t) == the body model with the converted parameters; ignoring
    that SMPL rotates about J0 (transl_c = R transl_w + t) is centimetres off."""
    model, rng = models["female"], np.random.default_rng(3)
    betas = rng.normal(0, 1, (1, 10)).astype(np.float32)
    orient_w, body_pose = rng.normal(0, 0.5, (2, 3)), rng.normal(0, 0.2, (2, 69)).astype(np.float32)
    transl_w = rng.normal(0, 1, (2, 3))
    R = Rotation.from_rotvec(rng.normal(0, 1.0, (2, 3))).as_matrix()
    t = rng.normal(0, 2, (2, 3))
    world = body_outputs(model, betas, body_pose, orient_w.astype(np.float32), transl_w.astype(np.float32))
    expected = np.einsum("tij,tvj->tvi", R, world.vertices.double().numpy()) + t[:, None]
    j0 = body_outputs(model, betas, np.zeros((1, 69), np.float32), np.zeros((1, 3), np.float32)).joints[0, 0].numpy()
    orient_c, transl_c = params_in_camera(orient_w, transl_w, R, t, j0)
    camera = body_outputs(model, betas, body_pose, orient_c.astype(np.float32), transl_c.astype(np.float32))
    assert np.abs(camera.vertices.numpy() - expected).max() < 1e-4
    naive = body_outputs(model, betas, body_pose, orient_c.astype(np.float32),
                         (np.einsum("tij,tj->ti", R, transl_w) + t).astype(np.float32))
    assert np.abs(naive.vertices.numpy() - expected).max() > 0.02


def test_stored_gta_params_reproduce_the_keypoints_through_body_model_and_camera(world, models):
    for seq in gta_sequences(world):
        out = body_outputs(models["male" if seq.is_male else "female"], seq.betas, seq.body_pose,
                           seq.global_orient, seq.transl)
        landmarks = game_joints(out.joints54.double().numpy())
        joints3d = seq.keypoints_3d[..., :3]
        uv = project(joints3d.reshape(-1, 3), seq.intrinsics).reshape(seq.num_frames, 100, 2)
        assert np.abs(uv - seq.keypoints_2d[..., :2]).max() < 1.0
        # the game's own rig: off the SMPL landmarks by centimetres (a modelling error to fit
        # through), never by more than the largest systematic offset x 1.4 plus the jitter
        offset = np.linalg.norm(joints3d - landmarks, axis=-1)
        assert 0.005 < offset.mean() < 0.05 and offset.max() < 0.1
        assert np.all(seq.keypoints_2d[..., 2] == 1) and np.all(seq.keypoints_3d[..., 3] == 1)


@pytest.mark.parametrize("key,domain", [("real_indoor_train", "real_indoor"), ("wild_test", "wild"),
                                        ("real_kp_train", "real_kp")])
def test_stored_spin_params_reproduce_S_and_part(world, manifest, models, key, domain):
    data = read_spin_npz(getattr(world, key))
    if key == "real_kp_train":  # keypoints only; its SMPL lives in a truth file for checks of static fits
        assert data.pose is None and not data.has_smpl.any()
        with np.load(world.real_kp_truth) as truth:
            assert len(truth["pose"]) == len(data.imgname)
            data.pose, data.shape, data.gender = truth["pose"], truth["shape"], truth["gender"]
    K = np.array(manifest["cameras"][domain]["intrinsics"])
    for gender_code, gender in ((0, "male"), (1, "female")):
        rows = np.flatnonzero(data.gender == gender_code)
        if rows.size == 0:
            continue
        out = body_outputs(models[gender], data.shape[rows], data.pose[rows, 3:], data.pose[rows, :3])
        joints24 = convert_keypoints(out.joints54.double(), "smpl_54", "smpl_24")[0].numpy()
        if data.S is not None:
            root = joints24[:, joint_index("smpl_24", "pelvis_extra")][:, None]
            assert np.abs(joints24 - root - data.S[rows, :, :3]).max() < 1e-3
        visible = data.part[rows, :, 2]
        transl = estimate_translation(joints24, data.part[rows, :, :2].astype(np.float64), visible, K[0, 0], K[:2, 2])
        uv = project((joints24 + transl[:, None]).reshape(-1, 3), K).reshape(len(rows), 24, 2)
        error = np.linalg.norm(uv - data.part[rows, :, :2], axis=-1)
        assert error[visible > 0].max() < 1.0


def test_visible_joints_fall_inside_the_rerendered_body_silhouette(world, models):
    """Re-render the body alone from the stored parameters. The silhouette's box is the stored
    bbox_xywh; every joint flagged visible lies inside the silhouette, checked on a 4x finer
    render (the toy's fingers are thinner than a pixel at this size) within half a pixel."""
    fine, checked = 4, 0
    for seq in gta_sequences(world):
        out = body_outputs(models["male" if seq.is_male else "female"], seq.betas, seq.body_pose,
                           seq.global_orient, seq.transl)
        width, height = seq.image_size
        K_fine = np.diag([fine, fine, 1.0]) @ seq.intrinsics
        for frame in (0, seq.num_frames // 2, seq.num_frames - 1):
            vertices = out.vertices[frame].double().numpy()
            mask = render_mesh(vertices, models["male"].faces, seq.intrinsics, width, height).mask
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            expected_box = [cols[0], rows[0], np.ptp(cols) + 1, np.ptp(rows) + 1]
            np.testing.assert_allclose(seq.bbox_xywh[frame], expected_box, atol=1)
            uv = seq.keypoints_2d[frame, :, :2]
            pixel = np.rint(uv).astype(int)
            inside = (pixel[:, 0] >= 0) & (pixel[:, 0] < width) & (pixel[:, 1] >= 0) & (pixel[:, 1] < height)
            visible = inside & ~seq.occ[frame] & ~seq.self_occ[frame]
            fine_mask = render_mesh(vertices, models["male"].faces, K_fine, width * fine, height * fine).mask
            fine_mask = binary_dilation(fine_mask, iterations=fine // 2)
            at = np.rint(uv[visible] * fine).astype(int).clip(0, [width * fine - 1, height * fine - 1])
            assert fine_mask[at[:, 1], at[:, 0]].all()
            checked += int(visible.sum())
    assert checked > 200


def test_occlusion_flags_agree_with_the_depth_maps(world):
    bodies = BodyModels(world.body_dir)
    gta_jobs = [job for job in plan_world(SIZES["tiny"], seed=0) if job.kind == "gta"]
    totals = np.zeros(3, int)
    for job in gta_jobs:
        stored = gta_raw.read_sequence(world.gta_root, job.spec.seq_name)
        data = simulate_sequence(job.spec, bodies, keep_depth=True)
        np.testing.assert_array_equal(data.occ, stored.occ)
        np.testing.assert_array_equal(data.self_occ, stored.self_occ)
        width, height = job.spec.size
        for frame, (body_depth, scene_depth) in enumerate(data.depths):
            uv = np.rint(stored.keypoints_2d[frame, :, :2]).astype(int)
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < width) & (uv[:, 1] >= 0) & (uv[:, 1] < height)
            u, v = uv[:, 0].clip(0, width - 1), uv[:, 1].clip(0, height - 1)
            z = stored.keypoints_3d[frame, :, 2]
            scene, body = scene_depth[v, u], body_depth[v, u]
            occ, self_occ = stored.occ[frame], stored.self_occ[frame]
            # Flagged occ: an object's surface is nearer than the joint (and nearer than the body).
            assert np.all(inside[occ]) and np.all(scene[occ] < z[occ] - SELF_OCCLUSION_TOLERANCE + 1e-4)
            assert np.all(scene[occ] < body[occ])
            assert np.all(body[self_occ] < z[self_occ] - SELF_OCCLUSION_TOLERANCE + 1e-4)
            # Not flagged and in view: nothing in front of the joint beyond the tolerance.
            clear = inside & ~occ & ~self_occ
            assert np.all(scene[clear] >= z[clear] - SELF_OCCLUSION_TOLERANCE - 1e-4)
            totals += [occ.sum(), self_occ.sum(), clear.sum()]
    assert np.all(totals > 20), totals  # the tiny world has occluders, self-occlusion and clear joints


# --- the domain gap ---------------------------------------------------------------------------
def border_statistics(path) -> tuple[float, float]:
    """(texture energy, saturation) of the left and right image borders (1/8 of the width each)."""
    image = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
    band = max(image.shape[1] // 8, 2)
    strips = [image[:, :band], image[:, -band:]]
    texture = np.mean([np.abs(np.diff(s.mean(-1), axis=a)).mean() for s in strips for a in (0, 1)])
    saturation = np.mean([(s.max(-1) - s.min(-1)).mean() for s in strips])
    return float(texture), float(saturation)


def test_domains_differ_in_background_statistics_and_camera_elevation(world, manifest, models):
    real = read_spin_npz(world.real_indoor_train)
    real_stats = np.array([border_statistics(world.real_indoor_root / n) for n in real.imgname])
    sequences = gta_sequences(world)
    gta_stats = np.array([border_statistics(world.gta_root / p) for s in sequences for p in s.image_paths])
    assert gta_stats[:, 0].mean() > 3.0 * real_stats[:, 0].mean()  # textured streets vs plain walls
    assert gta_stats[:, 1].mean() > 1.5 * real_stats[:, 1].mean()  # colourful vs grey studios

    # Elevation of the camera seen from the body (paper's factor). GTA: stored orient + transl
    # (+ rest pelvis J0); real: stored orient + the ray through the 2D pelvis (no transl in SPIN).
    K = np.linalg.inv(np.array(manifest["cameras"]["real_indoor"]["intrinsics"]))
    pelvis = real.part[:, joint_index("smpl_24", "pelvis_extra"), :2]
    rays = np.concatenate([pelvis, np.ones((len(pelvis), 1))], axis=1) @ K.T
    real_elevation, _ = camera_angles(real.pose[:, :3], rays)
    seq_of_row = np.array([name.split("/")[1] for name in real.imgname])
    real_medians = [np.median(real_elevation[seq_of_row == s]) for s in np.unique(seq_of_row)]
    gta_medians = []
    for seq in sequences:
        rest = body_outputs(models["male" if seq.is_male else "female"], seq.betas[:1],
                            np.zeros((1, 69), np.float32), np.zeros((1, 3), np.float32))
        elevation, _ = camera_angles(seq.global_orient, seq.transl, rest.joints[0, 0].numpy())
        gta_medians.append(np.median(elevation))
    assert min(real_medians) > -15 and max(real_medians) < 25  # narrow studio band (+ body tilt)
    assert np.ptp(gta_medians) > 20 and max(gta_medians) > max(real_medians) + 10


def test_plan_restricts_real_actions_and_keeps_wild_subjects_and_actions_partly_unseen():
    jobs = plan_world(SIZES["default"], seed=0)
    actions = {kind: {j.spec.action for j in jobs if j.kind == kind} for kind in ("real_train", "gta", "wild_test")}
    assert actions["real_train"] == set(INDOOR_ACTIONS) and actions["gta"] == set(ACTIONS)
    assert actions["wild_test"] - set(INDOOR_ACTIONS)  # run / jump / wave never filmed indoors
    subjects = {kind: {j.spec.subject.name for j in jobs if j.kind == kind}
                for kind in ("real_train", "real_val", "wild_test")}
    assert not subjects["real_train"] & subjects["real_val"]
    assert subjects["wild_test"] & subjects["real_train"] and subjects["wild_test"] - subjects["real_train"]
    assert len({j.spec.subject.name for j in jobs if j.kind == "gta"}) == SIZES["default"].gta_sequences


def test_game_skeleton_copies_named_joints_and_mixes_the_rest_convexly():
    joints54 = np.random.default_rng(0).normal(size=(2, 54, 3))
    by_name, mask = convert_keypoints(joints54, "smpl_54", "gta")
    game = game_joints(joints54)
    np.testing.assert_allclose(game[:, mask == 1], by_name[:, mask == 1])
    assert mask.sum() == 22 and np.all(GAME_LANDMARKS >= 0) and np.allclose(GAME_LANDMARKS.sum(1), 1)


def test_global_rotations_carry_the_bones_of_the_posed_body(models):
    """Independently of the body model's own kinematics: every posed bone is its rest bone
    turned by the parent's global rotation."""
    model = models["male"]
    rng = np.random.default_rng(4)
    orient, pose = rng.normal(0, 0.6, (2, 3)), rng.normal(0, 0.3, (2, 69))
    betas = np.zeros((1, 10), np.float32)
    rest = body_outputs(model, betas, np.zeros((1, 69), np.float32), np.zeros((1, 3), np.float32)).joints[0].double().numpy()
    posed = body_outputs(model, betas, pose.astype(np.float32), orient.astype(np.float32)).joints.double().numpy()
    rotations = global_rotations(orient, pose, model.parents)
    for j in range(1, 24):
        parent = model.parents[j]
        expected = np.einsum("tij,j->ti", rotations[:, parent], rest[j] - rest[parent])
        np.testing.assert_allclose(posed[:, j] - posed[:, parent], expected, atol=1e-5)


def test_a_rig_offset_rides_on_its_bone():
    """Hand-computed: the head's game joints move by the rig's offset turned with the head."""
    joints54 = np.zeros((1, 54, 3))
    rotations = np.tile(np.eye(3), (1, 24, 1, 1))
    quarter = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]).as_matrix()  # x -> y
    rotations[0, 15] = quarter
    offsets = np.zeros((100, 3))
    head_joints = np.flatnonzero(GAME_OWNERS == 15)
    offsets[head_joints] = (0.02, 0.0, 0.0)
    game = game_joints(joints54, rotations, GameRig(offsets))
    np.testing.assert_allclose(game[0, head_joints], np.tile([0.0, 0.02, 0.0], (len(head_joints), 1)), atol=1e-12)
    others = np.setdiff1d(np.arange(100), head_joints)
    np.testing.assert_allclose(game[0, others], 0.0)
    drawn = GameRig.draw(np.random.default_rng(0), RigVariation(scale=(1.0, 1.0), jitter_m=0.0, surface_jitter_m=0.0))
    ankle = get_names("gta").index("left_ankle")
    assert np.linalg.norm(drawn.offsets[ankle]) == pytest.approx(np.hypot(0.02, 0.01))
    assert np.all(drawn.offsets[get_names("gta").index("nose")] == 0)  # a surface point: no offset
    with pytest.raises(ValueError, match="global rotations"):
        game_joints(joints54, None, drawn)


# --- determinism and the cache ----------------------------------------------------------------
def test_same_seed_gives_the_same_bytes_with_any_number_of_workers(world, tmp_path):
    again = generate_world(tmp_path / "again", "tiny", seed=0, progress=False, workers=2)
    files = [p.relative_to(world.root) for p in sorted(world.root.rglob("*"))
             if p.is_file() and p.suffix in (".pkl", ".jpeg", ".jpg")]
    assert len(files) > 100
    for rel in files:
        assert (world.root / rel).read_bytes() == (again.root / rel).read_bytes(), rel
    for key in SPIN_FILES:  # npz zips carry timestamps; their arrays must match
        first, second = np.load(getattr(world, key)), np.load(getattr(again, key))
        for name in first.files:
            np.testing.assert_array_equal(first[name], second[name])


def test_rerun_is_a_cached_no_op_and_other_params_are_refused(world, capsys, tmp_path):
    pkl = world.gta_root / "annotations" / "seq_00000000.pkl"
    before = pkl.stat().st_mtime_ns
    assert cli_main([str(world.root), "--size", "tiny", "--quiet"]) == 0
    assert "cached" in capsys.readouterr().out and pkl.stat().st_mtime_ns == before
    assert generate_world(world.root, "tiny", seed=0, progress=False).cached and not world.cached
    with pytest.raises(WorldDirectoryError, match="overwrite"):
        generate_world(world.root, "tiny", seed=1, progress=False)
    assert WorldPaths.load(world.root).gta_root == world.gta_root
    moved = tmp_path / "moved"  # a copied world (with its own body dir) is still a cache hit
    shutil.copytree(world.root, moved)
    assert generate_world(moved, "tiny", seed=0, progress=False).cached
    assert WorldPaths.load(moved).body_dir == moved / "body"
