"""Speed of the mini world's CPU renderer (prints `name: value` lines, last `ratio: N`).

    python benchmarks/render.py [--frames 40]

Measures, at 480x270 with a GTA-like 50 deg vertical field of view:
* the toy body (13.7k faces, ~150 px tall, arms down) rendered alone and with two occluders;
* background generation (indoor / outdoor);
* the vectorised rasteriser against a naive per-face loop on a 2k-face sphere (`ratio`).
Numbers are wall-clock medians on whatever CPU runs this (the figures are per process, one
thread of numpy work; a shared machine makes them noisy).
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from gtahuman.body.smpl import BodyModel
from gtahuman.body.toy import write_toy_body_assets
from gtahuman.miniworld.motion import mean_pose
from gtahuman.miniworld.render import Box, Light, project, render_mesh, render_scene
from gtahuman.miniworld.scenes import indoor_background, outdoor_background

WIDTH, HEIGHT = 480, 270
FOCAL = (HEIGHT / 2) / np.tan(np.deg2rad(25.0))
K = np.array([[FOCAL, 0.0, WIDTH / 2 - 0.5], [0.0, FOCAL, HEIGHT / 2 - 0.5], [0.0, 0.0, 1.0]])
GROUND_TO_CAMERA = np.diag([1.0, -1.0, -1.0])  # y up, facing +z  ->  y down, facing the camera


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def toy_body_in_camera() -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as model_dir:
        write_toy_body_assets(model_dir)
        model = BodyModel(model_dir, "neutral")
    pose = torch.from_numpy(mean_pose()).reshape(1, 72)
    with torch.no_grad():
        out = model(torch.zeros(1, 10), pose[:, 3:], pose[:, :3])
    vertices = out.vertices[0].numpy().astype(np.float64) @ GROUND_TO_CAMERA.T
    distance = FOCAL * np.ptp(vertices[:, 1]) / 150.0  # ~150 px tall
    return vertices + [0.0, 0.0, distance], model.faces


def naive_render(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Reference: one Python iteration per face, numpy inside the face's bounding box."""
    depth = np.full((HEIGHT, WIDTH), np.inf)
    uv = project(vertices, K)
    for face in faces:
        (u0, v0), (u1, v1), (u2, v2) = uv[face]
        z = vertices[face, 2]
        area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
        if abs(area) < 1e-12:
            continue
        cols = np.arange(max(int(np.ceil(min(u0, u1, u2))), 0), min(int(np.floor(max(u0, u1, u2))), WIDTH - 1) + 1)
        rows = np.arange(max(int(np.ceil(min(v0, v1, v2))), 0), min(int(np.floor(max(v0, v1, v2))), HEIGHT - 1) + 1)
        if cols.size == 0 or rows.size == 0:
            continue
        pu, pv = np.meshgrid(cols, rows)
        w0 = ((u1 - pu) * (v2 - pv) - (u2 - pu) * (v1 - pv)) / area
        w1 = ((u2 - pu) * (v0 - pv) - (u0 - pu) * (v2 - pv)) / area
        w2 = 1.0 - w0 - w1
        inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
        z_pix = 1.0 / (w0 / z[0] + w1 / z[1] + w2 / z[2])
        closer = inside & (z_pix < depth[pv, pu])
        depth[pv[closer], pu[closer]] = z_pix[closer]
    return depth


def sphere(n_lat: int, n_lon: int, centre, radius) -> tuple[np.ndarray, np.ndarray]:
    theta, phi = np.meshgrid(np.linspace(0, np.pi, n_lat + 1), np.linspace(0, 2 * np.pi, n_lon, endpoint=False),
                             indexing="ij")
    vertices = np.stack([np.sin(theta) * np.cos(phi), np.cos(theta), np.sin(theta) * np.sin(phi)], -1).reshape(-1, 3)
    a = (np.arange(n_lat)[:, None] * n_lon + np.arange(n_lon)[None]).reshape(-1)
    b = (np.arange(n_lat)[:, None] * n_lon + (np.arange(n_lon)[None] + 1) % n_lon).reshape(-1)
    faces = np.concatenate([np.stack([a, a + n_lon, b], 1), np.stack([b, a + n_lon, b + n_lon], 1)])
    return vertices * radius + centre, faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vertices, faces = toy_body_in_camera()
    colours = rng.uniform(0.3, 0.9, (len(vertices), 3))
    result = render_mesh(vertices, faces, K, WIDTH, HEIGHT, vertex_colors=colours)
    rows, cols = np.nonzero(result.mask)
    print(f"body_faces: {len(faces)}")
    print(f"body_bbox_px: {np.ptp(cols) + 1}x{np.ptp(rows) + 1}")
    background = outdoor_background(rng, WIDTH, HEIGHT, 15.0, "clear")
    light = Light()
    body_ms = median_ms(lambda: render_mesh(vertices, faces, K, WIDTH, HEIGHT, vertex_colors=colours,
                                            light=light, background=background), args.frames)
    print(f"render_body_ms: {body_ms:.2f}")
    feet = np.array([0.0, vertices[:, 1].max(), vertices[:, 2].mean()])
    boxes = [Box(center=tuple(feet + [-0.4, -0.4, -1.0]), size=(0.8, 0.8, 0.6), color=(0.5, 0.4, 0.3)),
             Box(center=tuple(feet + [0.5, -1.5, -1.5]), size=(0.4, 3.0, 0.4), color=(0.6, 0.6, 0.6))]
    scene_ms = median_ms(lambda: render_scene(vertices, faces, K, WIDTH, HEIGHT, vertex_colors=colours,
                                              occluders=boxes, light=light, background=background), args.frames)
    print(f"render_scene_two_occluders_ms: {scene_ms:.2f}")
    print(f"indoor_background_ms: {median_ms(lambda: indoor_background(rng, WIDTH, HEIGHT), 10):.2f}")
    print(f"outdoor_background_ms: {median_ms(lambda: outdoor_background(rng, WIDTH, HEIGHT, 20.0, 'rain'), 10):.2f}")

    small_vertices, small_faces = sphere(20, 50, centre=(0.0, 0.0, 3.0), radius=0.5)
    fast = render_mesh(small_vertices, small_faces, K, WIDTH, HEIGHT)
    reference = naive_render(small_vertices, small_faces)
    agree = np.mean(np.isclose(fast.depth, reference, rtol=1e-5) | (np.isinf(fast.depth) & np.isinf(reference)))
    fast_ms = median_ms(lambda: render_mesh(small_vertices, small_faces, K, WIDTH, HEIGHT), args.frames)
    naive_ms = median_ms(lambda: naive_render(small_vertices, small_faces), 3)
    print(f"small_mesh_faces: {len(small_faces)}")
    print(f"small_mesh_pixels_agreeing_with_naive: {agree:.4f}")
    print(f"small_mesh_vectorised_ms: {fast_ms:.2f}")
    print(f"small_mesh_naive_per_face_ms: {naive_ms:.2f}")
    print(f"ratio: {naive_ms / fast_ms:.1f}")


if __name__ == "__main__":
    main()
