"""Sample images of a run: the model's predicted meshes drawn over the crops it trains on.

Every ``trainer.sample_images_every_n_steps`` optimiser steps, the first ``trainer.sample_images``
crops of the training batch (augmented, as the model sees them) go through the model in eval mode;
the predicted body (neutral model, the predicted weak-perspective camera as a translation at the
system's focal length) is rasterised by the mini world's renderer and blended over each crop. The
strip (crops above, meshes below) is written to ``<run>/samples/step_<step>.png`` and given to
every logger that takes images (TensorBoard, W&B, MLflow), so a reader sees what the numbers mean:
a mesh that stays the mean pose, faces the wrong way or floats off the person.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from PIL import Image

from gtahuman.atomic import atomic_open
from gtahuman.body.camera import weak_perspective_to_translation
from gtahuman.miniworld.render import render_mesh
from gtahuman.data.transforms import AugmentConfig, denormalize_image

MESH_COLOUR = np.array([0.55, 0.75, 1.0])  # light blue: apart from skin and most clothing
MESH_ALPHA = 0.65


def mesh_overlays(system: Any, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(crops, overlays), each (K, R, R, 3) uint8: the normalised ``images`` (K, 3, R, R) as RGB,
    and the same with the system's predicted mesh blended over them."""
    was_training = system.training
    system.eval()
    try:
        with torch.no_grad():
            output, _ = system(images)
            body = system.predict_body(output)
    finally:
        system.train(was_training)
    res = images.shape[-1]
    focal = float(system.focal_length)
    K = np.array([[focal, 0.0, res / 2.0], [0.0, focal, res / 2.0], [0.0, 0.0, 1.0]])
    transl = weak_perspective_to_translation(output.cam.float().cpu(), focal, res).numpy()
    vertices = body.vertices.float().cpu().numpy() + transl[:, None]
    faces = np.asarray(system._body("neutral", images.device).faces)
    crops, overlays = [], []
    for i, image in enumerate(images.cpu()):
        crop = np.clip(denormalize_image(image, AugmentConfig(img_res=res)), 0, 255)
        rendered = render_mesh(vertices[i], faces, K, res, res,
                               vertex_colors=np.tile(MESH_COLOUR, (len(vertices[i]), 1)))
        blended = crop.copy()
        mask = rendered.mask
        blended[mask] = (1 - MESH_ALPHA) * crop[mask] + MESH_ALPHA * rendered.image[mask]
        crops.append(crop.astype(np.uint8))
        overlays.append(blended.astype(np.uint8))
    return np.stack(crops), np.stack(overlays)


def strip(crops: np.ndarray, overlays: np.ndarray) -> np.ndarray:
    """(2R, K R, 3) uint8: the crops in a row above their overlays."""
    return np.concatenate([np.concatenate(list(crops), axis=1), np.concatenate(list(overlays), axis=1)], axis=0)


def log_image(trainer: L.Trainer, key: str, image: np.ndarray, step: int) -> list[str]:
    """Give ``image`` (H, W, 3) uint8 to every logger that takes images; returns their names."""
    took = []
    for logger in trainer.loggers:
        name = type(logger).__name__
        if name == "TensorBoardLogger":
            logger.experiment.add_image(key, image, step, dataformats="HWC")
        elif name == "WandbLogger":
            logger.log_image(key=key, images=[image], step=step)
        elif name == "MLFlowLogger":
            logger.experiment.log_image(logger.run_id, image, f"{key.replace('/', '_')}_{step:06d}.png")
        else:
            continue
        took.append(name)
    return took


class SampleMeshes(L.Callback):
    """Every ``every_n_steps`` optimiser steps: the predicted meshes of the batch's first ``count``
    crops, to ``<out_dir>/step_<step>.png`` and the image-taking loggers (rank zero only)."""

    def __init__(self, out_dir: Path, every_n_steps: int, count: int = 4) -> None:
        if every_n_steps < 1 or count < 1:
            raise ValueError(f"SampleMeshes: every_n_steps and count must be >= 1; got {every_n_steps}, {count}")
        self.out_dir, self.every_n_steps, self.count = Path(out_dir), int(every_n_steps), int(count)
        self._done: set[int] = set()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step == 0 or step % self.every_n_steps or step in self._done:
            return
        self._done.add(step)  # variant 'hmr' makes two optimiser steps per batch: one strip per step
        images = (batch["source"] if "source" in batch and isinstance(batch["source"], dict) else batch)["img"]
        crops, overlays = mesh_overlays(pl_module, images[: self.count].float())
        image = strip(crops, overlays)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(self.out_dir / f"step_{step:06d}.png", "wb") as handle:
            Image.fromarray(image).save(handle, format="PNG")
        log_image(trainer, "samples/predicted_mesh", image, step)
