"""Sim2real: a trained CycleGAN generator as a transform of the synthetic person crops.

Two uses (``adaptation.sim2real_mode``), the same arithmetic (reference/domain_adaptation.md 4.5):

- ``offline`` (TLlib's way): :func:`translate_crop_cache` writes a translated copy of a synthetic
  source's crop cache once, in the cache's own format (same rows, affines, index fingerprint and
  bad rows; crops re-encoded as JPEG at the source's quality), and HMR trains on it unchanged.
- ``online``: :class:`Sim2RealTransform` restyles the synthetic rows of each training batch (already
  cropped, augmented and ImageNet-normalised) before the backbone, without gradients.

:func:`apply_sim2real` does what the config asks for over the prepared train sources.

Conversion as TLlib's ``Translation``: pixels/255 -> [-1, 1] -> generator -> [0, 1]; offline the
result is truncated to uint8 (x 255, no rounding, as ``ToPILImage`` does). Inputs whose sides
are not multiples of 4 are reflect-padded for the generator and cropped back.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn
from tqdm.auto import tqdm

from gtahuman.sim2real.data import to_unit_range
from gtahuman.sim2real.nets import ResnetGenerator
from gtahuman.atomic import atomic_output, atomic_write_bytes, atomic_write_text
from gtahuman.data.crop_cache import (
    AFFINES,
    BLOB,
    MANIFEST,
    OFFSETS,
    CropCache,
    CropCacheMismatchError,
)
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.transforms import IMAGENET_MEAN, IMAGENET_STD

log = logging.getLogger(__name__)
DIRECTIONS = {"synthetic_to_real": "g_synthetic_to_real.", "real_to_synthetic": "g_real_to_synthetic."}
GENERATOR_ARGS = ("ngf", "n_blocks", "norm", "dropout")
MODES = ("online", "offline")
STAGING = ".building"


class Sim2RealCheckpointError(ValueError):
    """A checkpoint that is not a CycleGANSystem checkpoint (names the file and what is missing)."""


# ----------------------------------------------------------------------------- the generator
def load_generator(checkpoint: str | os.PathLike, direction: str = "synthetic_to_real",
                   map_location: str | torch.device = "cpu") -> ResnetGenerator:
    """One generator of a `CycleGANSystem` checkpoint, in eval mode and frozen (the
    discriminators and the other generator are not built)."""
    path = Path(checkpoint)
    if direction not in DIRECTIONS:
        raise ValueError(f"sim2real: direction must be one of {sorted(DIRECTIONS)}; got {direction!r}")
    if not path.is_file():
        raise FileNotFoundError(f"sim2real checkpoint {path} not found (train one with "
                                "python -m gtahuman.sim2real.cyclegan)")
    ckpt = torch.load(path, map_location=map_location, weights_only=True)
    hparams, state = ckpt.get("hyper_parameters"), ckpt.get("state_dict")
    if not isinstance(hparams, Mapping) or not isinstance(state, Mapping):
        raise Sim2RealCheckpointError(f"{path}: no 'hyper_parameters'/'state_dict'; expected a Lightning checkpoint "
                                      "of gtahuman.sim2real.cyclegan.CycleGANSystem")
    prefix = DIRECTIONS[direction]
    missing = [k for k in GENERATOR_ARGS if k not in hparams]
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if missing or not weights:
        raise Sim2RealCheckpointError(
            f"{path}: not a CycleGANSystem checkpoint (hyper-parameters lack {missing}, "
            f"{len(weights)} weights under '{prefix}'); got hyper-parameters {sorted(hparams)[:8]}")
    generator = ResnetGenerator(**{k: hparams[k] for k in GENERATOR_ARGS})
    generator.load_state_dict(weights)
    return generator.eval().requires_grad_(False)


def translate_unit_images(generator: nn.Module, images: Tensor) -> Tensor:
    """(B, 3, H, W) in [-1, 1] -> the generator's output, same size (reflect-padded to its
    ``size_multiple`` and cropped back when H or W is not a multiple of it)."""
    height, width = images.shape[-2:]
    multiple = getattr(generator, "size_multiple", 1)
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), mode="reflect")
    return generator(images)[..., :height, :width]


def _fingerprint(generator: nn.Module) -> str:
    """sha256 of the generator's weights: names a translation by what it was made with."""
    digest = hashlib.sha256()
    for name, tensor in sorted(generator.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Sim2RealTransform(nn.Module):
    """Restyle ImageNet-normalised (B, 3, H, W) batches with a synthetic -> real generator.

    Always evaluates the generator in eval mode without gradients (``train()`` does not switch
    it: the output must not depend on the rest of the batch), so the same input gives the same
    output. Follows its input's device on the first call, so it can live outside the module
    tree of the system that uses it (kept out of its checkpoints and optimiser).
    """

    def __init__(self, generator: nn.Module, mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD):
        super().__init__()
        self.generator = generator.eval().requires_grad_(False)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, **kwargs: tuple[float, float, float]) -> Sim2RealTransform:
        return cls(load_generator(checkpoint), **kwargs)

    def train(self, mode: bool = True) -> Sim2RealTransform:
        super().train(mode)
        self.generator.eval()
        return self

    @torch.no_grad()
    def forward(self, img: Tensor) -> Tensor:
        if self.mean.device != img.device:
            self.to(img.device)
        unit = (img.float() * self.std + self.mean) * 2.0 - 1.0
        restyled = (translate_unit_images(self.generator, unit) + 1.0) / 2.0
        return ((restyled - self.mean) / self.std).to(img.dtype)


def translate_synthetic_rows(img: Tensor, synthetic: Tensor, transform: nn.Module) -> Tensor:
    """``img`` with the rows where ``synthetic`` (bool (B,)) is set replaced by their
    translation; other rows untouched. No gradient flows through the translation."""
    synthetic = synthetic.to(device=img.device, dtype=torch.bool).reshape(-1)
    if synthetic.numel() != img.shape[0]:
        raise ValueError(f"translate_synthetic_rows: mask of {synthetic.numel()} rows for {img.shape[0]} images")
    if not bool(synthetic.any()):
        return img
    with torch.no_grad():
        out = img.clone()
        out[synthetic] = transform(img[synthetic])
    return out


class SyntheticRowTranslation:
    """``(img, synthetic (B,) bool) -> img`` with the synthetic rows restyled: the online
    translation a run hands to `HMRSystem` (``synthetic_translation``), so that the system applies
    it without knowing CycleGAN."""

    def __init__(self, transform: nn.Module) -> None:
        self.transform = transform

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike) -> SyntheticRowTranslation:
        return cls(Sim2RealTransform.from_checkpoint(checkpoint))

    def __call__(self, img: Tensor, synthetic: Tensor) -> Tensor:
        return translate_synthetic_rows(img, synthetic, self.transform)


# ---------------------------------------------------------------------- offline translation
def _translate_rows(source: CropCache, rows: range, generator: nn.Module, device: torch.device,
                    batch_size: int, quality: int) -> list[bytes]:
    """JPEG bytes of the translated crops of ``rows`` (empty for rows recorded as unreadable)."""
    blobs: dict[int, bytes] = {row: b"" for row in rows if row in source.bad_rows}
    good = [row for row in rows if row not in source.bad_rows]
    for start in range(0, len(good), batch_size):
        batch = good[start:start + batch_size]
        images = torch.stack([to_unit_range(source.read(row)[0]) for row in batch]).to(device)
        with torch.no_grad():
            out = (translate_unit_images(generator, images) + 1.0) / 2.0
        # ToPILImage's conversion: x 255, truncated (the tanh keeps values in range; clamp for safety)
        pixels = (out * 255.0).clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
        for row, crop in zip(batch, pixels):
            buffer = io.BytesIO()
            Image.fromarray(crop).save(buffer, format="JPEG", quality=quality)
            blobs[row] = buffer.getvalue()
    return [blobs[row] for row in rows]


def translate_crop_cache(src_crop_dir: str | os.PathLike, out_crop_dir: str | os.PathLike,
                         checkpoint: str | os.PathLike | nn.Module, *, direction: str = "synthetic_to_real",
                         batch_size: int = 16, device: str | torch.device | None = None, chunk_rows: int = 512,
                         progress: bool = True) -> CropCache:
    """Write the translation of the crop cache ``src_crop_dir`` to ``out_crop_dir``; return it.

    ``checkpoint``: a `CycleGANSystem` checkpoint (or a generator module). Resumable: chunks of
    ``chunk_rows`` rows land atomically in ``<out>/.building/`` and a rerun skips finished
    ones; the manifest is written last. An existing translation of the same source by the same
    generator is returned as is; one of anything else is refused.
    """
    if batch_size <= 0 or chunk_rows <= 0:
        raise ValueError(f"translate_crop_cache: need batch_size > 0 and chunk_rows > 0; "
                         f"got {batch_size}, {chunk_rows}")
    source, out_dir = CropCache(src_crop_dir), Path(out_crop_dir)
    generator = load_generator(checkpoint, direction) if not isinstance(checkpoint, nn.Module) else checkpoint.eval()
    provenance = {"source_cache": str(source.directory.resolve()),
                  "source_manifest_sha256": hashlib.sha256((source.directory / MANIFEST).read_bytes()).hexdigest(),
                  "generator_sha256": _fingerprint(generator), "direction": direction,
                  "checkpoint": None if isinstance(checkpoint, nn.Module) else str(Path(checkpoint).resolve())}
    same = ("source_manifest_sha256", "generator_sha256", "direction")
    if (out_dir / MANIFEST).is_file():
        done = CropCache(out_dir)
        made_with = done.manifest.get("sim2real", {})
        if all(made_with.get(k) == provenance[k] for k in same):
            log.info("sim2real: %s is already translated (%d rows)", out_dir, len(done))
            return done
        what = made_with or "not a sim2real cache"
        raise CropCacheMismatchError(f"{out_dir / MANIFEST}: holds another translation ({what}) than "
                                     f"{provenance['source_cache']} by this generator; use another directory "
                                     "or delete this one")
    staging = out_dir / STAGING
    build = {**{k: provenance[k] for k in same}, "chunk_rows": chunk_rows}
    if (staging / "build.json").is_file() and json.loads((staging / "build.json").read_text()) != build:
        log.warning("sim2real: discarding a partial translation in %s made with other inputs", staging)
        shutil.rmtree(staging)
    staging.mkdir(parents=True, exist_ok=True)
    atomic_write_text(staging / "build.json", json.dumps(build))

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    generator = generator.to(device)
    quality, n = int(source.manifest["quality"]), len(source)
    chunks = [range(start, min(n, start + chunk_rows)) for start in range(0, n, chunk_rows)]
    lengths: list[list[int]] = []
    with tqdm(total=n, unit="crop", desc=f"sim2real {out_dir.name}", disable=not progress) as bar:
        for k, rows in enumerate(chunks):
            record_path, blob_path = staging / f"chunk_{k:06d}.json", staging / f"chunk_{k:06d}.bin"
            record = json.loads(record_path.read_text()) if record_path.is_file() else None
            if record is None or not blob_path.is_file() or blob_path.stat().st_size != sum(record["lengths"]):
                blobs = _translate_rows(source, rows, generator, device, batch_size, quality)
                atomic_write_bytes(blob_path, b"".join(blobs))
                record = {"start": rows.start, "stop": rows.stop, "lengths": [len(b) for b in blobs]}
                atomic_write_text(record_path, json.dumps(record))  # written last: marks the chunk done
            lengths.append(record["lengths"])
            bar.update(len(rows))
    return _assemble(out_dir, staging, source, lengths, provenance)


def _assemble(out_dir: Path, staging: Path, source: CropCache, lengths: list[list[int]],
              provenance: dict[str, str | None]) -> CropCache:
    """Concatenate the chunks into the crop cache files; the manifest goes last."""
    offsets = np.concatenate([[0], np.cumsum([n for chunk in lengths for n in chunk])]).astype(np.int64)
    with atomic_output(out_dir / BLOB) as tmp, open(tmp, "wb") as blob:
        for k in range(len(lengths)):
            with open(staging / f"chunk_{k:06d}.bin", "rb") as part:
                shutil.copyfileobj(part, blob, 1 << 24)
    for name, array in ((OFFSETS, offsets), (AFFINES, np.load(source.directory / AFFINES))):
        with atomic_output(out_dir / name) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
    manifest = {**source.manifest, "blob_bytes": int(offsets[-1]), "sim2real": provenance}
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=1))
    shutil.rmtree(staging, ignore_errors=True)
    return CropCache(out_dir)


# -------------------------------------------------------------------------- config entry point
@dataclass
class Sim2RealSetup:
    """What `apply_sim2real` did: the train sources to use, and the online transform if any."""

    train_sources: dict[str, SourceSpec]
    translated: dict[str, str] = field(default_factory=dict)  # offline: source name -> translated cache
    transform: Sim2RealTransform | None = None  # online
    synthetic_source_ids: list[int] = field(default_factory=list)  # positions of synthetic train sources


def apply_sim2real(checkpoint: str | None, mode: str, train_sources: Mapping[str, SourceSpec],
                   cache_dir: str | os.PathLike, *, device: str | None = None, progress: bool = True) -> Sim2RealSetup:
    """``adaptation.sim2real_checkpoint`` / ``adaptation.sim2real_mode`` over the prepared train
    sources (name -> SourceSpec, in train order). No checkpoint: the sources unchanged.

    offline: each synthetic source's crop cache is translated once into
    ``<cache_dir>/crops_sim2real/<its cache name>-<generator hash>`` and its spec points there.
    online: the sources unchanged, plus the transform and the synthetic sources' positions.
    """
    sources = dict(train_sources)
    if mode not in MODES:
        raise ValueError(f"config key 'adaptation.sim2real_mode' must be one of {MODES}; got {mode!r}")
    if not checkpoint:
        return Sim2RealSetup(sources)
    if not Path(checkpoint).is_file():
        raise FileNotFoundError(f"config key 'adaptation.sim2real_checkpoint': {checkpoint} not found (train one "
                                "with python -m gtahuman.sim2real.cyclegan)")
    synthetic = [name for name, spec in sources.items() if spec.role == "synthetic"]
    if not synthetic:
        raise ValueError(f"adaptation.sim2real_checkpoint is set but no train source has role 'synthetic' "
                         f"(train sources: {list(sources)})")
    ids = [list(sources).index(name) for name in synthetic]
    if mode == "online":
        return Sim2RealSetup(sources, transform=Sim2RealTransform.from_checkpoint(checkpoint), synthetic_source_ids=ids)
    generator = load_generator(checkpoint)
    tag = _fingerprint(generator)[:10]
    translated = {}
    for name in synthetic:
        spec = sources[name]
        if spec.crop_cache_dir is None or spec.crop_shards_dir is not None:
            raise ValueError(f"adaptation.sim2real_mode=offline translates crop caches: train source '{name}' has "
                             f"crop_cache_dir={spec.crop_cache_dir}, crop_shards_dir={spec.crop_shards_dir}; set "
                             "data.crop_cache=true (and no shards) or use adaptation.sim2real_mode=online")
        out = Path(cache_dir) / "crops_sim2real" / f"{Path(spec.crop_cache_dir).name}-{tag}"
        translate_crop_cache(spec.crop_cache_dir, out, generator, device=device, progress=progress)
        translated[name] = str(out)
        sources[name] = replace(spec, crop_cache_dir=str(out))
    return Sim2RealSetup(sources, translated=translated, synthetic_source_ids=ids)
