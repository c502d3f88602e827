"""Draw a few samples of a prepared index: the image, its keypoints and the SMPL mesh projected.

The picture is the quickest proof that a dataset was prepared right: keypoints on the joints,
left joints green and right joints red (a left/right swap shows at once), and the body model's
mesh (blue, half transparent) lying on the person. Each tile is a square window around the
person box, ``CONTEXT`` times its longer side, scaled to ``TILE`` pixels.

The mesh is posed from the index's SMPL columns with the sample's gender (neutral when unknown)
and projected with

- the sample's pinhole camera when the index knows it (``focal_length`` > 0 and a translation in
  front of the camera, e.g. GTA-Human: principal point at the image centre);
- otherwise a weak-perspective camera fitted by least squares to the visible 2D keypoints (SPIN
  and HumanData files store no translation).

``agreement`` per sample is the fraction of drawn keypoints that fall on the projected mesh
(dilated by a few pixels): near 1 when SMPL and keypoints describe the same body, low when a
gender, camera, flip or row order is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from gtahuman.body.conventions import get_names
from gtahuman.body.smpl import BodyModel
from gtahuman.data.index import SampleIndex

TILE = 256  # tile side in pixels
CONTEXT = 1.4  # window side = CONTEXT x the longer side of the person box
LABEL_HEIGHT = 14
GAP = 4
KEYPOINT_RADIUS = 2
LEFT_COLOUR = (40, 220, 60)
RIGHT_COLOUR = (235, 50, 50)
CENTRE_COLOUR = (250, 210, 30)
MESH_COLOUR = np.array([70, 130, 255], np.float32)
MESH_ALPHA = 0.45
MESH_DILATION_PX = 3  # keypoints this close to the silhouette count as on the mesh
GENDERS = {-1: "neutral", 0: "male", 1: "female"}


def keypoint_colours(convention: str = "smpl_54") -> np.ndarray:
    """(J, 3) uint8 colour per joint: left green, right red, centre yellow."""
    colours = []
    for name in get_names(convention):
        colours.append(LEFT_COLOUR if name.startswith("left_") else
                       RIGHT_COLOUR if name.startswith("right_") else CENTRE_COLOUR)
    return np.array(colours, np.uint8)


@dataclass
class DrawnSample:
    """Where one sample landed in the sheet and what was drawn for it."""

    row: int
    image_path: str
    origin: tuple[int, int]  # the tile's top-left corner in the sheet
    window: tuple[float, float, float]  # (x0, y0, side) of the full-image window shown
    joint_ids: np.ndarray  # smpl_54 ids of the keypoints drawn, in drawing order
    keypoints: np.ndarray  # (K, 2) their sheet pixels
    camera: str  # perspective | fitted weak perspective | none (no SMPL)
    agreement: float | None  # fraction of drawn keypoints on the mesh; None without a mesh
    error: str | None = None  # why the image could not be shown


@dataclass
class DrawnSheet:
    path: Path
    size: tuple[int, int]
    samples: list[DrawnSample] = field(default_factory=list)


def pick_rows(n: int, count: int) -> np.ndarray:
    """``count`` rows spread evenly over ``n`` samples (first and last included)."""
    if n <= 0 or count <= 0:
        return np.zeros(0, np.int64)
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(np.int64))


class _Bodies:
    """Body models of the index's genders, loaded on first use."""

    def __init__(self, model_dir: Path):
        self.model_dir, self.models = model_dir, {}

    def pose(self, index: SampleIndex, row: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vertices (V, 3), smpl_54 joints (54, 3), faces) in the camera frame, no translation."""
        gender = GENDERS.get(int(index["gender"][row]), "neutral")
        if gender not in self.models:
            self.models[gender] = BodyModel(self.model_dir, gender).eval()
        model = self.models[gender]

        def column(name: str) -> torch.Tensor:
            return torch.from_numpy(np.array(index[name][row], np.float32)).reshape(1, -1)  # a copy: maps are read-only

        with torch.no_grad():
            out = model(column("smpl_betas"), column("smpl_body_pose"), column("smpl_global_orient"))
        return out.vertices[0].numpy(), out.joints54[0].numpy(), model.faces


def fit_weak_perspective(joints: np.ndarray, keypoints2d: np.ndarray) -> tuple[float, np.ndarray] | None:
    """Scale s and shift t with ``s * joints[:, :2] + t ~ keypoints2d[:, :2]`` over visible
    joints (least squares); None with fewer than 3 visible joints or a non-positive scale."""
    visible = keypoints2d[:, 2] > 0
    if visible.sum() < 3:
        return None
    xy, uv = joints[visible, :2].astype(np.float64), keypoints2d[visible, :2].astype(np.float64)
    k = len(xy)
    a = np.zeros((2 * k, 3))
    a[:k, 0], a[:k, 1] = xy[:, 0], 1.0
    a[k:, 0], a[k:, 2] = xy[:, 1], 1.0
    solution = np.linalg.lstsq(a, np.concatenate([uv[:, 0], uv[:, 1]]), rcond=None)[0]
    if solution[0] <= 0:
        return None
    return float(solution[0]), solution[1:]


def project_mesh(index: SampleIndex, row: int, vertices: np.ndarray,
                 joints: np.ndarray) -> tuple[np.ndarray | None, str]:
    """Full-image pixels (V, 2) of the mesh and the camera used (see the module docstring)."""
    focal = float(index["focal_length"][row])
    transl = np.asarray(index["smpl_transl"][row], np.float64)
    if focal > 0 and transl[2] > 0:
        centre = np.asarray(index["image_size"][row], np.float64) / 2.0
        points = vertices + transl
        depth = np.maximum(points[:, 2:3], 1e-6)
        return focal * points[:, :2] / depth + centre, "perspective"
    fitted = fit_weak_perspective(joints, np.asarray(index["keypoints2d"][row]))
    if fitted is None:
        return None, "none"
    scale, shift = fitted
    return scale * vertices[:, :2] + shift, "fitted weak perspective"


def _silhouette(pixels: np.ndarray, faces: np.ndarray) -> Image.Image:
    """Filled triangles of the projected mesh as an 'L' mask of the tile."""
    mask = Image.new("L", (TILE, TILE), 0)
    draw = ImageDraw.Draw(mask)
    inside = np.abs(pixels).max(axis=1) < 10 * TILE  # keep PIL away from huge coordinates
    for a, b, c in faces:
        if inside[a] and inside[b] and inside[c]:
            draw.polygon([tuple(pixels[a]), tuple(pixels[b]), tuple(pixels[c])], fill=255)
    return mask


def window_of(bbox_xywh: np.ndarray) -> tuple[float, float, float]:
    """(x0, y0, side) of the square full-image window a tile shows."""
    x, y, w, h = (float(v) for v in bbox_xywh)
    side = CONTEXT * max(w, h, 1.0)
    return x + w / 2 - side / 2, y + h / 2 - side / 2, side


def _tile(index: SampleIndex, row: int, image_root: Path, bodies: _Bodies | None,
          colours: np.ndarray) -> tuple[Image.Image, DrawnSample]:
    x0, y0, side = window_of(np.asarray(index["bbox_xywh"][row]))
    zoom = TILE / side
    path = index.image_path(row)
    sample = DrawnSample(row=row, image_path=path, origin=(0, 0), window=(x0, y0, side),
                         joint_ids=np.zeros(0, np.int64), keypoints=np.zeros((0, 2)), camera="none", agreement=None)
    try:
        with Image.open(image_root / path) as image:
            # EXTENT maps the float window exactly onto the tile (black outside the image)
            tile = image.convert("RGB").transform((TILE, TILE), Image.EXTENT, (x0, y0, x0 + side, y0 + side),
                                                  Image.BILINEAR)
    except (OSError, ValueError) as err:
        sample.error = f"{image_root / path}: {err}"
        tile = Image.new("RGB", (TILE, TILE), (60, 0, 0))
        ImageDraw.Draw(tile).text((4, TILE // 2), "unreadable image", fill=(255, 255, 255))
        return tile, sample
    keypoints = np.asarray(index["keypoints2d"][row], np.float64)
    to_tile = (keypoints[:, :2] - (x0, y0)) * zoom
    drawn = np.flatnonzero((keypoints[:, 2] > 0) & (to_tile >= 0).all(axis=1) & (to_tile < TILE).all(axis=1))
    mask = None
    if bodies is not None and bool(index["has_smpl"][row]):
        vertices, joints, faces = bodies.pose(index, row)
        pixels, sample.camera = project_mesh(index, row, vertices, joints)
        if pixels is not None:
            mask = _silhouette((pixels - (x0, y0)) * zoom, faces)
            pixels_rgb = np.asarray(tile, np.float32)
            on = np.asarray(mask)[..., None] > 0
            blended = (1 - MESH_ALPHA) * pixels_rgb + MESH_ALPHA * MESH_COLOUR
            tile = Image.fromarray(np.where(on, blended, pixels_rgb).round().astype(np.uint8))
    draw = ImageDraw.Draw(tile)
    bx, by, bw, bh = (float(v) for v in index["bbox_xywh"][row])
    draw.rectangle([(bx - x0) * zoom, (by - y0) * zoom, (bx + bw - x0) * zoom, (by + bh - y0) * zoom],
                   outline=(255, 255, 255))
    r = KEYPOINT_RADIUS
    for j in drawn:  # a dark ring, then the joint's colour: the centre pixel is exactly the colour
        x, y = to_tile[j]
        draw.ellipse([x - r - 1, y - r - 1, x + r + 1, y + r + 1], fill=(0, 0, 0))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in colours[j]))
    if mask is not None and len(drawn):
        grown = np.asarray(mask.filter(ImageFilter.MaxFilter(2 * MESH_DILATION_PX + 1))) > 0
        cells = np.clip(to_tile[drawn].round().astype(int), 0, TILE - 1)
        sample.agreement = float(grown[cells[:, 1], cells[:, 0]].mean())
    sample.joint_ids, sample.keypoints = drawn, to_tile[drawn]
    return tile, sample


def draw_samples(index: SampleIndex, image_root: str | Path, out: str | Path, *, count: int = 6,
                 body_model_dir: str | Path | None = None, columns: int = 3) -> DrawnSheet:
    """Draw ``count`` evenly spread samples of ``index`` into the PNG ``out``.

    ``body_model_dir``: the body model to pose the SMPL columns with (None: keypoints only).
    """
    rows = pick_rows(len(index), count)
    if not len(rows):
        raise ValueError(f"index '{index.meta['dataset']}' has no samples to draw")
    bodies = _Bodies(Path(body_model_dir)) if body_model_dir is not None else None
    colours = keypoint_colours(index.meta.get("keypoint_convention", "smpl_54"))
    columns = max(1, min(columns, len(rows)))
    grid_rows = -(-len(rows) // columns)
    width = columns * TILE + (columns - 1) * GAP
    height = grid_rows * (LABEL_HEIGHT + TILE) + (grid_rows - 1) * GAP
    sheet = Image.new("RGB", (width, height), (25, 25, 28))
    draw = ImageDraw.Draw(sheet)
    drawn = DrawnSheet(path=Path(out), size=(width, height))
    for k, row in enumerate(rows):
        tile, sample = _tile(index, int(row), Path(image_root), bodies, colours)
        left, top = (k % columns) * (TILE + GAP), (k // columns) * (LABEL_HEIGHT + TILE + GAP)
        sheet.paste(tile, (left, top + LABEL_HEIGHT))
        sample.origin = (left, top + LABEL_HEIGHT)
        sample.keypoints = sample.keypoints + sample.origin
        agreement = "" if sample.agreement is None else f"  mesh/kp {sample.agreement:.2f}"
        draw.text((left + 2, top + 1), f"{index.meta['dataset']} #{row}{agreement}", fill=(255, 255, 255))
        drawn.samples.append(sample)
    drawn.path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(drawn.path)
    return drawn
