"""Draw a grid of mini-world frames per domain, keypoints on top, into docs/miniworld.png.

    python analysis/miniworld_picture.py [WORLD_DIR] [--size default] [--seed 0] [--out docs/miniworld.png]

The world is generated into WORLD_DIR first if it is not there (cached otherwise; default
.cache/gtahuman/miniworld/<size>-seed<seed>). Everything is read back through the suite's
real readers (SPIN npz, raw GTA-Human), so the picture shows what training will see.
Colours: SPIN sets draw the 24 smpl_24 joints and limbs (green, only joints with visibility
1); GTA frames draw the 100 game joints (green visible, blue self-occluded, red occluded by
an object) and the silhouette box (yellow).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from gtahuman.body.conventions import joint_index
from gtahuman.data.formats import gta_raw
from gtahuman.data.formats.spin_npz import read_spin_npz
from gtahuman.miniworld.world import generate_world

TILE_HEIGHT, PORTRAIT_HEIGHT, COLUMNS = 200, 300, 4
# The README shows the picture at about 0.6x (1,436 px wide into ~880): text is drawn at a size
# that stays readable there (PIL's default bitmap font, 11 px, became 6-7 px).
LABEL_FONT_PX, TILE_FONT_PX = 26, 20


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # FreeType build of Pillow: a scalable font
    except (TypeError, OSError, ImportError):
        return ImageFont.load_default()
LIMBS = [("right_ankle", "right_knee"), ("right_knee", "right_hip_extra"), ("left_ankle", "left_knee"),
         ("left_knee", "left_hip_extra"), ("right_hip_extra", "left_hip_extra"), ("right_wrist", "right_elbow"),
         ("right_elbow", "right_shoulder"), ("left_wrist", "left_elbow"), ("left_elbow", "left_shoulder"),
         ("right_shoulder", "neck_extra"), ("left_shoulder", "neck_extra"), ("neck_extra", "headtop"),
         ("neck_extra", "pelvis_extra")]
GAME_LIMBS = [("head", "neck"), ("neck", "right_shoulder"), ("right_shoulder", "right_elbow"),
              ("right_elbow", "right_wrist"), ("neck", "left_shoulder"), ("left_shoulder", "left_elbow"),
              ("left_elbow", "left_wrist"), ("neck", "spine_2"), ("spine_2", "pelvis"), ("pelvis", "right_hip"),
              ("right_hip", "right_knee"), ("right_knee", "right_ankle"), ("pelvis", "left_hip"),
              ("left_hip", "left_knee"), ("left_knee", "left_ankle")]


def _fit(image: Image.Image, height: int) -> tuple[Image.Image, float]:
    factor = height / image.height
    return image.resize((round(image.width * factor), height), Image.LANCZOS), factor


def _overlay(tile: Image.Image) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A transparent layer to draw on: keypoints half-transparent so the body shows through."""
    layer = Image.new("RGBA", tile.size, (0, 0, 0, 0))
    return layer, ImageDraw.Draw(layer)


def _flatten(tile: Image.Image, layer: Image.Image) -> Image.Image:
    return Image.alpha_composite(tile.convert("RGBA"), layer).convert("RGB")


def spin_tiles(npz: Path, image_root: Path, count: int, height: int) -> list[Image.Image]:
    data = read_spin_npz(npz)
    picks = np.linspace(0, len(data) - 1, count).round().astype(int)
    tiles = []
    for i in picks:
        tile, k = _fit(Image.open(image_root / str(data.imgname[i])).convert("RGB"), height)
        layer, draw = _overlay(tile)
        part = data.part[i]
        for a, b in LIMBS:
            ia, ib = joint_index("smpl_24", a), joint_index("smpl_24", b)
            if part[ia, 2] > 0 and part[ib, 2] > 0:
                draw.line([tuple(part[ia, :2] * k), tuple(part[ib, :2] * k)], fill=(40, 230, 60, 110), width=1)
        for x, y, visible in part:
            if visible > 0:
                draw.ellipse([x * k - 2.0, y * k - 2.0, x * k + 2.0, y * k + 2.0], fill=(40, 255, 80, 190))
        tiles.append(_flatten(tile, layer))
    return tiles


def gta_tiles(root: Path, count: int, height: int) -> list[Image.Image]:
    names = gta_raw.list_sequences(root)
    tiles = []
    for n in range(count):
        seq = gta_raw.read_sequence(root, names[n * len(names) // count])
        frame = (n * 7) % seq.num_frames
        tile, k = _fit(Image.open(root / seq.image_paths[frame]).convert("RGB"), height)
        layer, draw = _overlay(tile)
        points = seq.keypoints_2d[frame, :, :2] * k
        for a, b in GAME_LIMBS:
            draw.line([tuple(points[joint_index("gta", a)]), tuple(points[joint_index("gta", b)])],
                      fill=(235, 235, 235, 110), width=1)
        for (x, y), occ, self_occ in zip(points, seq.occ[frame], seq.self_occ[frame]):
            colour = (255, 40, 40, 200) if occ else (60, 120, 255, 200) if self_occ else (40, 255, 80, 200)
            draw.rectangle([x - 0.5, y - 0.5, x + 0.5, y + 0.5], fill=colour)
        x, y, w, h = seq.bbox_xywh[frame] * k
        draw.rectangle([x, y, x + w, y + h], outline=(255, 220, 0, 200))
        draw.text((5, 3), f"{seq.weather} {seq.daytime[0]:02d}:{seq.daytime[1]:02d}", fill=(255, 255, 255, 255),
                  font=_font(TILE_FONT_PX), stroke_width=2, stroke_fill=(0, 0, 0, 255))
        tiles.append(_flatten(tile, layer))
    return tiles


def compose(rows: list[tuple[str, list[Image.Image]]]) -> Image.Image:
    label_height, gap, font = LABEL_FONT_PX + 10, 4, _font(LABEL_FONT_PX)
    width = max(sum(t.width for t in tiles) + gap * (len(tiles) - 1) for _, tiles in rows)
    height = sum(label_height + max(t.height for t in tiles) + gap for _, tiles in rows)
    canvas = Image.new("RGB", (width, height), (25, 25, 28))
    draw, y = ImageDraw.Draw(canvas), 0
    for label, tiles in rows:
        draw.text((6, y + 4), label, fill=(255, 255, 255), font=font)
        y += label_height
        x = 0
        for tile in tiles:
            canvas.paste(tile, (x, y))
            x += tile.width + gap
        y += max(t.height for t in tiles) + gap
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("world_dir", nargs="?", default=None)
    parser.add_argument("--size", default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="docs/miniworld.png")
    args = parser.parse_args()
    world_dir = args.world_dir or f".cache/gtahuman/miniworld/{args.size}-seed{args.seed}"
    paths = generate_world(world_dir, args.size, args.seed)
    rows = [
        ("real_indoor: studio, SPIN npz (like H36M), smpl_24 joints", spin_tiles(paths.real_indoor_train, paths.real_indoor_root,
                                                                        COLUMNS, TILE_HEIGHT)),
        ("real_kp: outdoor photos, 2D keypoints only (like LSP / COCO)", spin_tiles(paths.real_kp_train, paths.real_indoor_root,
                                                                  COLUMNS, TILE_HEIGHT)),
        ("gta: raw GTA-Human; joints green visible, blue self-occluded, red occluded; box yellow",
         gta_tiles(paths.gta_root, 2 * COLUMNS, TILE_HEIGHT)),
        ("wild_test: SPIN npz (like 3DPW), moving camera", spin_tiles(paths.wild_test, paths.wild_root, 7,
                                                                      PORTRAIT_HEIGHT)),
    ]
    rows = rows[:2] + [(rows[2][0], rows[2][1][:COLUMNS]), ("gta (more)", rows[2][1][COLUMNS:])] + rows[3:]
    canvas = compose(rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette keeps the PNG well under 1 MB without visible loss at this size.
    canvas.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"wrote {out} ({canvas.width}x{canvas.height}, {out.stat().st_size / 1e6:.2f} MB) from {paths.root}")


if __name__ == "__main__":
    main()
