"""A small vectorised CPU rasteriser (numpy, no OpenGL) for the mini world.

Conventions: vertices in an OpenCV camera frame (x right, y down, z forward, metres);
pixel (row r, column c) is sampled at its centre, the image point (u, v) = (c, r) of the
pinhole projection u = fx x/z + cx, v = fy y/z + cy. `depth` is the camera z of the
surface (not the ray length), interpolated perspective-correctly (1/z is linear in the
image), so at a pixel centre it equals the analytic depth of the triangle's plane.

How it stays fast without a per-triangle loop: every small face lists the pixel centres of
its bounding box (one `np.repeat` over all faces), large faces list only their span on each
row (so they cost their area, not their box); both in chunks of a bounded number of
candidates. Barycentrics come from per-face linear edge functions, and the z-buffer is a
scatter-min (`np.minimum.at`) of one int64 key per candidate: the float32 depth bits
(monotone for positive floats) in the high half and the face index in the low half, so the
minimum gives both the depth and the winner. Ties at equal depth go to the lower face
index. Faces with a vertex closer than `NEAR_PLANE` are dropped (no clipping): keep
geometry in front of the camera. No anti-aliasing, no back-face culling for the mesh
(box occluders, being convex, drop their back faces).

Shading is Lambert with an ambient term from face normals turned towards the camera, so
the winding of the input mesh does not matter. Colours: `face_colors` win over
`vertex_colors` (interpolated perspective-correctly); floats in [0, 1] or 0..255 values.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NEAR_PLANE = 0.05  # metres
_EMPTY_KEY = np.iinfo(np.int64).max
_MAX_CANDIDATES = 2_000_000  # pixel candidates per chunk: bounds memory for huge faces
_LARGE_FACE_PIXELS = 256  # faces with bigger bounding boxes are enumerated span by span


@dataclass(frozen=True)
class Light:
    """A directional light in the camera frame.

    direction: unit vector from the surface towards the light (camera frame; -y is up,
    -z points back at the camera). Shade = albedo * color * (ambient + diffuse * max(0, n.l)).
    """

    direction: tuple[float, float, float] = (-0.3, -0.8, -0.5)
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    ambient: float = 0.35
    diffuse: float = 0.75


@dataclass
class RenderResult:
    image: np.ndarray  # (H, W, 3) uint8, composited over the background
    depth: np.ndarray  # (H, W) float32 camera z, inf where empty
    face_index: np.ndarray  # (H, W) int64, -1 where empty
    mask: np.ndarray  # (H, W) bool, covered pixels


@dataclass(frozen=True)
class Box:
    """An occluder: a box with `center` (3,), edge lengths `size` (3,) along the columns
    of `rotation` (local -> camera), flat `color` (RGB in [0, 1])."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        """(8, 3) vertices and (12, 3) triangles."""
        corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
        vertices = (corners * np.asarray(self.size)) @ np.asarray(self.rotation).T + np.asarray(self.center)
        quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
        faces = [tri for a, b, c, d in quads for tri in ((a, b, c), (a, c, d))]
        return vertices, np.array(faces, dtype=np.int64)


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) camera points -> (N, 2) image points (u, v) in pixels."""
    points = np.asarray(points_cam, dtype=np.float64)
    homogeneous = points / points[:, 2:3]
    return (homogeneous @ np.asarray(K, dtype=np.float64).T)[:, :2]


def _check_mesh(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"render: vertices_cam must be (V, 3), got {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"render: faces must be (F, 3), got {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"render: faces index vertices 0..{len(vertices) - 1}, got {faces.min()}..{faces.max()}")
    return vertices, faces


def _plane_coefficients(u: np.ndarray, v: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Linear image-plane functions of M triangles, from (3, M) vertex rows u, v, z.

    Returns (9, M) coefficients, each triple (a, b, c) meaning a * u + b * v + c at a pixel:
    rows 0-2 and 3-5 the screen barycentric weights of vertices 0 and 1 (vertex 2's is one
    minus both), rows 6-8 the inverse depth 1/z; and the signed areas (M,) in pixels^2.
    """
    (u0, u1, u2), (v0, v1, v2) = u, v
    area = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
    inv_area = 1.0 / np.where(np.abs(area) > 1e-12, area, 1.0)
    out = np.empty((9, len(u0)))
    out[0], out[1], out[2] = (v1 - v2) * inv_area, (u2 - u1) * inv_area, (u1 * v2 - u2 * v1) * inv_area
    out[3], out[4], out[5] = (v2 - v0) * inv_area, (u0 - u2) * inv_area, (u2 * v0 - u0 * v2) * inv_area
    inv_z = 1.0 / z
    # 1/z = w0/z0 + w1/z1 + (1 - w0 - w1)/z2, linear in the pixel like the weights.
    d0, d1 = inv_z[0] - inv_z[2], inv_z[1] - inv_z[2]
    out[6], out[7], out[8] = d0 * out[0] + d1 * out[3], d0 * out[1] + d1 * out[4], d0 * out[2] + d1 * out[5] + inv_z[2]
    return out, area


def _face_setup(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int):
    """Per-face plane coefficients (9, F) and pixel bounding boxes (origin, width, count)."""
    z = vertices[:, 2]
    safe_z = np.where(z > NEAR_PLANE, z, 1.0)
    uv = project(np.column_stack([vertices[:, :2], safe_z]), K)
    corners = faces.T  # (3, F): one row per triangle corner keeps every gather one-dimensional
    u, v, zf = uv[:, 0][corners], uv[:, 1][corners], safe_z[corners]
    coefs, area = _plane_coefficients(u, v, zf)
    valid = (np.minimum(np.minimum(z[corners[0]], z[corners[1]]), z[corners[2]]) > NEAR_PLANE)
    valid &= np.abs(area) > 1e-12
    lowest, highest = np.minimum(np.minimum(u[0], u[1]), u[2]), np.maximum(np.maximum(u[0], u[1]), u[2])
    u_lo = np.clip(np.ceil(lowest), 0, width).astype(np.int64)
    u_hi = np.clip(np.floor(highest), -1, width - 1).astype(np.int64)
    lowest, highest = np.minimum(np.minimum(v[0], v[1]), v[2]), np.maximum(np.maximum(v[0], v[1]), v[2])
    v_lo = np.clip(np.ceil(lowest), 0, height).astype(np.int64)
    v_hi = np.clip(np.floor(highest), -1, height - 1).astype(np.int64)
    box_w, box_h = np.maximum(u_hi - u_lo + 1, 0), np.maximum(v_hi - v_lo + 1, 0)
    counts = np.where(valid, box_w * box_h, 0)
    return coefs, u_lo, v_lo, box_w, box_h, counts


def _bbox_candidates(face_ids: np.ndarray, setup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pixel centre of the faces' bounding boxes (cheap for the many small faces)."""
    _, u_lo, v_lo, box_w, _, counts = setup
    n = counts[face_ids]
    face = np.repeat(face_ids, n)
    local = np.arange(face.size) - np.repeat(np.cumsum(n) - n, n)
    w_box = box_w[face]
    return face, u_lo[face] + local % w_box, v_lo[face] + local // w_box


def _span_candidates(face_ids: np.ndarray, setup) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixels of large faces row by row, only across the triangle's span on each row (plus a
    pixel of margin; the exact test follows), so a big face costs its area, not its box."""
    coefs, u_lo, v_lo, box_w, box_h, _ = setup
    rows = box_h[face_ids]
    face = np.repeat(face_ids, rows)
    pv = v_lo[face] + np.arange(face.size) - np.repeat(np.cumsum(rows) - rows, rows)
    a0, b0, c0, a1, b1, c1 = (coefs[k][face] for k in range(6))
    # On this row each weight is slope * u + offset and must be >= -1e-9 (the exact test).
    slopes = np.stack([a0, a1, -a0 - a1])
    offsets = np.stack([b0 * pv + c0, b1 * pv + c1, 1.0 - (b0 + b1) * pv - c0 - c1]) + 1e-9
    with np.errstate(divide="ignore", invalid="ignore"):
        bound = -offsets / slopes
    lower = np.where(slopes > 0, bound, -np.inf).max(axis=0)
    upper = np.where(slopes < 0, bound, np.inf).min(axis=0)
    u_hi = u_lo[face] + box_w[face] - 1
    first = np.maximum(np.ceil(np.maximum(lower, -1.0)) - 1, u_lo[face]).astype(np.int64)
    last = np.minimum(np.floor(np.minimum(upper, u_hi + 1.0)) + 1, u_hi).astype(np.int64)
    empty = ((slopes == 0) & (offsets < 0)).any(axis=0)
    lengths = np.where(empty, 0, np.maximum(last - first + 1, 0))
    span_face = np.repeat(face, lengths)
    local = np.arange(span_face.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    return span_face, np.repeat(first, lengths) + local, np.repeat(pv, lengths)


def _scatter(face, pu, pv, coefs, width, buffers, split_face) -> None:
    """Inside test and depth of candidate pixels, then scatter-min of their keys."""
    pu_f, pv_f = pu.astype(np.float64), pv.astype(np.float64)
    c = [row[face] for row in coefs]
    w0 = c[0] * pu_f + c[1] * pv_f + c[2]
    w1 = c[3] * pu_f + c[4] * pv_f + c[5]
    inside = (np.minimum(w0, w1) >= -1e-9) & (w0 + w1 <= 1.0 + 1e-9)
    depth = (1.0 / (c[6] * pu_f + c[7] * pv_f + c[8])).astype(np.float32)
    keys = np.where(inside, (depth.view(np.int32).astype(np.int64) << 32) | face, _EMPTY_KEY)
    pixel = pv * width + pu
    np.minimum.at(buffers[0], pixel, keys)
    if split_face is not None:
        np.minimum.at(buffers[1], pixel, np.where(face < split_face, keys, _EMPTY_KEY))


def rasterize_keys(vertices_cam, faces, K, width, height, split_face: int | None = None) -> list[np.ndarray]:
    """Z-buffer keys (H*W,) int64 (see module doc); with `split_face`, also the buffer of
    faces [0, split_face) alone (e.g. the body without its occluders), from the same pass."""
    vertices, faces = _check_mesh(vertices_cam, faces)
    buffers = [np.full(width * height, _EMPTY_KEY, dtype=np.int64) for _ in range(1 + (split_face is not None))]
    if len(faces) == 0:
        return buffers
    setup = _face_setup(vertices, faces, np.asarray(K, dtype=np.float64), width, height)
    counts = setup[-1]
    for candidates, selected in ((_bbox_candidates, (counts > 0) & (counts <= _LARGE_FACE_PIXELS)),
                                 (_span_candidates, counts > _LARGE_FACE_PIXELS)):
        active = np.flatnonzero(selected)
        if active.size == 0:
            continue
        chunk_id = np.cumsum(counts[active]) // _MAX_CANDIDATES  # bounding-box sizes bound the work
        for chunk in np.split(active, np.flatnonzero(np.diff(chunk_id)) + 1):
            _scatter(*candidates(chunk, setup), setup[0], width, buffers, split_face)
    return buffers


def decode_keys(keys: np.ndarray, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Z-buffer keys -> depth (H, W) float32 (inf empty), face_index (H, W) int64 (-1 empty)."""
    covered = keys != _EMPTY_KEY
    depth = np.full(keys.shape, np.inf, dtype=np.float32)
    depth[covered] = (keys[covered] >> 32).astype(np.int32).view(np.float32)
    face = np.where(covered, keys & 0xFFFFFFFF, -1)
    return depth.reshape(height, width), face.reshape(height, width)


def face_normals_towards_camera(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(F, 3) unit normals, flipped where needed to point at the camera (the origin)."""
    p0, p1, p2 = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    a, b = p1 - p0, p2 - p0
    normals = np.column_stack([a[:, 1] * b[:, 2] - a[:, 2] * b[:, 1],
                               a[:, 2] * b[:, 0] - a[:, 0] * b[:, 2],
                               a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]])
    normals /= np.maximum(np.sqrt(np.einsum("fk,fk->f", normals, normals)), 1e-12)[:, None]
    facing_away = np.einsum("fk,fk->f", normals, p0) > 0  # p0 lies on the face's plane
    normals[facing_away] *= -1
    return normals


def _per_face_then_gather(face: np.ndarray, num_faces: int, compute) -> np.ndarray:
    """compute(face_ids) for the pixels' faces: over all faces once and gathered when pixels
    outnumber faces, directly per pixel otherwise (whichever is less work)."""
    if face.size > num_faces:
        return compute(np.arange(num_faces))[..., face]
    return compute(face)


def perspective_barycentrics(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray,
                             face: np.ndarray, pixel_uv: np.ndarray) -> np.ndarray:
    """(M, 3) barycentric weights on the 3D triangle `face` (M,) seen at pixel (u, v) (M, 2)."""
    uv = project(vertices, K)

    def coefficients(ids: np.ndarray) -> np.ndarray:
        corners = faces[ids].T
        return _plane_coefficients(uv[:, 0][corners], uv[:, 1][corners], vertices[:, 2][corners])[0][:6]

    coefs = _per_face_then_gather(face, len(faces), coefficients)
    pu, pv = pixel_uv[:, 0], pixel_uv[:, 1]
    w0 = coefs[0] * pu + coefs[1] * pv + coefs[2]
    w1 = coefs[3] * pu + coefs[4] * pv + coefs[5]
    screen = np.column_stack([w0, w1, 1.0 - w0 - w1])
    weights = screen / vertices[faces[face], 2]  # perspective correction: divide by z, renormalise
    return weights / weights.sum(axis=1, keepdims=True)


def _to_unit_rgb(colors: np.ndarray) -> np.ndarray:
    colors = np.asarray(colors, dtype=np.float64)
    return colors / 255.0 if colors.size and colors.max() > 1.0 else colors


def _albedo(face, pixel_uv, vertices, faces, K, vertex_colors, face_colors):
    """Per covered pixel colour in [0, 1]: face colour, or vertex colours interpolated with
    perspective-correct barycentrics of the winning face."""
    if face_colors is not None:
        return _to_unit_rgb(face_colors)[face]
    if vertex_colors is None:
        return np.full((len(face), 3), 0.7)
    weights = perspective_barycentrics(vertices, faces, K, face, pixel_uv)
    return np.einsum("mk,mkc->mc", weights, _to_unit_rgb(vertex_colors)[faces[face]])


def shade(vertices, faces, depth, face_index, K, *, vertex_colors=None, face_colors=None,
          light: Light | None = None, background: np.ndarray | None = None) -> np.ndarray:
    """Lambert-shaded uint8 image of the covered pixels, composited over `background`."""
    light = light or Light()
    height, width = depth.shape
    if background is None:
        image = np.zeros((height, width, 3), dtype=np.uint8)
    else:
        if background.shape != (height, width, 3):
            raise ValueError(f"render: background must be ({height}, {width}, 3), got {background.shape}")
        image = np.array(background, dtype=np.uint8, copy=True)
    rows, cols = np.nonzero(face_index >= 0)
    face = face_index[rows, cols]
    if face.size == 0:
        return image
    direction = np.asarray(light.direction, dtype=np.float64)
    direction = direction / np.linalg.norm(direction)
    normals = _per_face_then_gather(face, len(faces), lambda ids: face_normals_towards_camera(vertices, faces[ids]).T)
    lambert = np.clip(direction @ normals, 0.0, None)
    intensity = light.ambient + light.diffuse * lambert
    albedo = _albedo(face, np.column_stack([cols, rows]).astype(np.float64), vertices, faces, K,
                     vertex_colors, face_colors)
    rgb = albedo * intensity[:, None] * np.asarray(light.color)[None]
    image[rows, cols] = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
    return image


def render_mesh(vertices_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int, *,
                vertex_colors: np.ndarray | None = None, face_colors: np.ndarray | None = None,
                light: Light | None = None, background: np.ndarray | None = None) -> RenderResult:
    """Render one mesh (camera frame) into a `RenderResult` (see the module doc for conventions)."""
    vertices, faces = _check_mesh(vertices_cam, faces)
    (keys,) = rasterize_keys(vertices, faces, K, width, height)
    depth, face_index = decode_keys(keys, width, height)
    image = shade(vertices, faces, depth, face_index, np.asarray(K, dtype=np.float64),
                  vertex_colors=vertex_colors, face_colors=face_colors, light=light, background=background)
    return RenderResult(image=image, depth=depth, face_index=face_index, mask=face_index >= 0)


def _front_faces_of_convex(vertices: np.ndarray, faces: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The faces of a convex solid that look at the camera (back faces can never be seen)."""
    tri = vertices[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    outward = np.where((np.einsum("fk,fk->f", normals, tri[:, 0] - centre) < 0)[:, None], -normals, normals)
    return faces[np.einsum("fk,fk->f", outward, tri[:, 0]) < 0]


@dataclass
class SceneRender:
    """A person among occluders. `scene.face_index` < `num_body_faces` is the body, the rest
    are occluder faces in order; `body_depth` is the body rendered alone (same pass)."""

    scene: RenderResult
    body_depth: np.ndarray  # (H, W) float32, inf where the body is absent
    num_body_faces: int

    @property
    def body_mask(self) -> np.ndarray:
        """Visible body pixels (occluders removed)."""
        return (self.scene.face_index >= 0) & (self.scene.face_index < self.num_body_faces)

    @property
    def body_full_mask(self) -> np.ndarray:
        """Body pixels as if nothing occluded it (amodal silhouette)."""
        return np.isfinite(self.body_depth)


def render_scene(vertices_cam: np.ndarray, faces: np.ndarray, K: np.ndarray, width: int, height: int, *,
                 vertex_colors: np.ndarray | None = None, occluders: tuple[Box, ...] | list[Box] = (),
                 light: Light | None = None, background: np.ndarray | None = None) -> SceneRender:
    """Draw the person and box occluders into one z-buffer (one rasterisation pass)."""
    vertices, faces = _check_mesh(vertices_cam, faces)
    body_rgb = np.full((len(vertices), 3), 0.7) if vertex_colors is None else _to_unit_rgb(vertex_colors)
    all_vertices, all_faces, all_rgb = [vertices], [faces], [body_rgb]
    offset = len(vertices)
    for box in occluders:
        box_vertices, box_faces = box.mesh()
        box_faces = _front_faces_of_convex(box_vertices, box_faces, np.asarray(box.center, dtype=np.float64))
        all_vertices.append(box_vertices)
        all_faces.append(box_faces + offset)
        all_rgb.append(np.tile(np.asarray(box.color, dtype=np.float64), (len(box_vertices), 1)))
        offset += len(box_vertices)
    scene_vertices, scene_faces = np.concatenate(all_vertices), np.concatenate(all_faces)
    keys, body_keys = rasterize_keys(scene_vertices, scene_faces, K, width, height, split_face=len(faces))
    depth, face_index = decode_keys(keys, width, height)
    body_depth, _ = decode_keys(body_keys, width, height)
    image = shade(scene_vertices, scene_faces, depth, face_index, np.asarray(K, dtype=np.float64),
                  vertex_colors=np.concatenate(all_rgb), light=light, background=background)
    scene = RenderResult(image=image, depth=depth, face_index=face_index, mask=face_index >= 0)
    return SceneRender(scene=scene, body_depth=body_depth, num_body_faces=len(faces))
