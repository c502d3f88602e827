"""Person regions from full frames: box geometry, JPEG decoding at a reduced size, and the
square cut around a box. The crop cache builds from these, and the dataset's full-frame path
reads with them, so both see the same pixels for the same box."""
from __future__ import annotations

import math
import os
from collections.abc import Iterable

import numpy as np
from PIL import Image

JPEG_REDUCTIONS = (8, 4, 2, 1)  # the DCT scalings libjpeg decodes at (1/8 .. full size)


class UnreadableImageError(ValueError):
    """An image (or a cached crop) that cannot be decoded; carries ``path`` and ``reason``."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def bbox_center_side(bbox_xywh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(x, y, w, h) boxes -> centres (..., 2) and square sides max(w, h) (...), float64."""
    box = np.asarray(bbox_xywh, np.float64)
    return box[..., :2] + box[..., 2:4] / 2.0, box[..., 2:4].max(axis=-1)


def jpeg_reduction(region_side_px: float, needed_px: float) -> int:
    """Largest DCT reduction (8, 4, 2, 1) that still leaves ``needed_px`` across a region
    ``region_side_px`` wide in the frame: decoding at 1/8 size is ~10x cheaper."""
    for reduction in JPEG_REDUCTIONS:
        if region_side_px / reduction >= needed_px:
            return reduction
    return 1


def decode_image(
    path: str | os.PathLike, expected_size: Iterable[int] | None = None, reduction: int = 1
) -> tuple[Image.Image, int]:
    """Decode ``path`` to an RGB image, JPEGs at 1/``reduction`` size; return (image, the
    reduction applied). Pixel i of a reduced image covers original pixels [i r, (i+1) r), so
    coordinates scale by exactly 1/r. Raises :class:`UnreadableImageError` naming the file."""
    try:
        with Image.open(path) as image:
            full_size = image.size
            applied = 1
            if reduction > 1 and image.format == "JPEG":
                drafted = image.draft("RGB", (max(1, full_size[0] // reduction), max(1, full_size[1] // reduction)))
                if drafted is not None:  # None: progressive/multi-tile JPEG, decoded at full size
                    applied = round(full_size[0] / drafted[1][2])
            rgb = image.convert("RGB")  # forces the decode, so truncated files fail here
    except FileNotFoundError:
        raise UnreadableImageError(path, "file not found") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(path, f"cannot decode ({type(err).__name__}: {err})") from None
    if expected_size is not None and tuple(full_size) != tuple(int(v) for v in expected_size):
        wanted = "x".join(str(int(v)) for v in expected_size)
        raise UnreadableImageError(path, f"is {full_size[0]}x{full_size[1]} px, the index says {wanted}")
    return rgb, applied


def cut_square(image: Image.Image, center: np.ndarray, side: float, res: int, reduction: int = 1) -> np.ndarray:
    """The axis-aligned square of ``side`` full-image px centred at ``center``, resized to
    ``res`` (antialiased bilinear), black outside the image; ``image`` may be decoded at
    1/``reduction``. Same geometry as ``warp.crop_affine(center, side, 0, res)``."""
    cx, cy = np.asarray(center, np.float64) / reduction
    s = side / reduction
    x0, y0 = cx - s / 2.0, cy - s / 2.0
    ix0, iy0 = math.floor(x0), math.floor(y0)
    region = image.crop((ix0, iy0, math.ceil(x0 + s), math.ceil(y0 + s)))  # zero-filled outside
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + s, y0 - iy0 + s)
    return np.asarray(region.resize((res, res), Image.BILINEAR, box=box))
