"""CycleGAN sim2real: network shapes and sizes against TLlib's figures, the LSGAN/cycle/identity
objective, training on two image sets that differ by a colour shift, checkpoint round trips, the
online transform and the offline crop-cache translation (read back by the suite's own reader).

Everything runs with tiny networks (ngf = ndf = 8, 2 residual blocks) on 32 px images.
"""
from __future__ import annotations

import io

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from gtahuman.sim2real import translate as sim2real
from gtahuman.sim2real.cyclegan import CycleGANSystem, lsgan_loss, train_cyclegan
from gtahuman.sim2real.data import CropPool, UnpairedCropDataset
from gtahuman.sim2real.nets import (
    ImagePool,
    PatchDiscriminator,
    ResnetGenerator,
)
from gtahuman.sim2real.translate import (
    Sim2RealCheckpointError,
    Sim2RealTransform,
    apply_sim2real,
    load_generator,
    translate_crop_cache,
    translate_synthetic_rows,
)
from gtahuman.data.crop_cache import CropCache, CropCacheMismatchError, build_crop_cache
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.index import SampleIndex, encode_strings
from gtahuman.data.index_synthetic import synthesize_index
from gtahuman.data.transforms import IMAGENET_MEAN, IMAGENET_STD

pytestmark = pytest.mark.usefixtures("single_thread")  # see conftest: 2 busy threads are far slower than 1
TINY = {"ngf": 8, "n_blocks": 2, "ndf": 8, "disc_layers": 2}
SHIFT = torch.tensor([0.35, -0.2, -0.2]).view(1, 3, 1, 1)  # the synthetic set's colour cast, in [-1, 1] units


def patterns(n: int, res: int, seed: int) -> torch.Tensor:
    """Smooth coloured stripes in [-0.6, 0.6] (room for the colour shift without clipping)."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, res), torch.linspace(0, 1, res), indexing="ij")
    freq, phase = torch.rand(n, 3, 1, 1, generator=g) * 6 + 1, torch.rand(n, 3, 1, 1, generator=g) * 6
    return 0.6 * torch.sin(freq * x + phase) * torch.cos(freq * y - phase)


class UnpairedTensors(Dataset):
    def __init__(self, real: torch.Tensor, synthetic: torch.Tensor):
        self.real, self.synthetic = real, synthetic

    def __len__(self) -> int:
        return len(self.real)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"real": self.real[i], "synthetic": self.synthetic[(i * 7) % len(self.synthetic)]}


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, **kwargs)


# ------------------------------------------------------------------------------- networks
def test_generator_keeps_size_and_range_and_refuses_odd_sizes():
    generator = ResnetGenerator(ngf=4, n_blocks=1)
    for shape in [(2, 3, 32, 32), (1, 3, 64, 64), (1, 3, 32, 48)]:
        out = generator(torch.randn(shape) * 3)
        assert out.shape == shape
        assert out.abs().max() <= 1.0  # tanh head
    with pytest.raises(ValueError, match="multiples of 4"):
        generator(torch.zeros(1, 3, 30, 32))


def test_patchgan_output_grid():
    # 70x70 PatchGAN: 256 px -> 30 x 30, 224 px -> 26 x 26 (depends on the geometry, not the width)
    disc = PatchDiscriminator(ndf=4, n_layers=3)
    assert disc(torch.zeros(1, 3, 256, 256)).shape == (1, 1, 30, 30)
    assert disc(torch.zeros(2, 3, 224, 224)).shape == (2, 1, 26, 26)
    # two layers at 32 px: 32 -> 16 -> 8 -> 7 (stride-1 conv) -> 6
    assert PatchDiscriminator(ndf=4, n_layers=2)(torch.zeros(3, 3, 32, 32)).shape == (3, 1, 6, 6)


def test_parameter_counts_match_tllib():
    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    assert count(ResnetGenerator(64, 9)) == 11_378_179  # resnet_9, instance norm
    assert count(ResnetGenerator(64, 9, norm="batch")) == 11_383_427
    assert count(ResnetGenerator(64, 6)) == 7_837_699  # resnet_6
    assert count(PatchDiscriminator(64, 3)) == 2_764_737


def test_image_pool_returns_history_half_the_time_once_full():
    pool = ImagePool(size=4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: stored and returned as is
    seen, from_history = set(range(4)), 0
    for step in range(200):
        image = torch.full((1, 1, 1, 1), 100.0 + step)
        out = float(pool.query(image))
        assert out in seen or out == 100.0 + step
        from_history += out != 100.0 + step
        seen.add(100.0 + step)
    assert 0.4 < from_history / 200 < 0.6
    assert torch.equal(ImagePool(size=0).query(first), first)


def test_lsgan_and_lr_schedule_values():
    scores = torch.tensor([0.5, 1.5])
    assert float(lsgan_loss(scores, True)) == pytest.approx((0.25 + 0.25) / 2)
    assert float(lsgan_loss(scores, False)) == pytest.approx((0.25 + 2.25) / 2)
    system = CycleGANSystem(**TINY, epochs_constant=20, epochs_decay=20)
    assert [system.lr_factor(e) for e in (0, 20, 21, 30, 39, 40)] == pytest.approx([1, 1, 0.95, 0.5, 0.05, 0])


def test_generator_objective_weights():
    system = CycleGANSystem(**TINY)
    terms, fake_real, fake_synthetic = system.generator_losses(patterns(2, 32, 0), patterns(2, 32, 1))
    expected = (terms["gan_synthetic_to_real"] + terms["gan_real_to_synthetic"]
                + 10 * (terms["cycle_synthetic"] + terms["cycle_real"])
                + 5 * (terms["identity_real"] + terms["identity_synthetic"]))
    assert float(terms["total"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)
    assert fake_real.shape == fake_synthetic.shape == (2, 3, 32, 32)
    no_identity, _, _ = CycleGANSystem(**TINY, lambda_identity=0.0).generator_losses(patterns(2, 32, 0),
                                                                                      patterns(2, 32, 1))
    assert "identity_real" not in no_identity


# ------------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def trained(single_thread, tmp_path_factory):
    """60 optimiser steps (30 batches: generators + discriminators each step) on patterns vs
    patterns with a colour cast; returns the system, its probe losses before training and a
    saved checkpoint."""
    L.seed_everything(0, verbose=False)
    real, synthetic = patterns(64, 32, 0), (patterns(64, 32, 1) + SHIFT).clamp(-1, 1)
    system = CycleGANSystem(**TINY, epochs_constant=100, epochs_decay=0)
    probe_real, probe_synthetic = patterns(8, 32, 5), (patterns(8, 32, 6) + SHIFT).clamp(-1, 1)
    with torch.no_grad():
        before, _, _ = system.generator_losses(probe_real, probe_synthetic)
        translated_before = system(probe_synthetic)
    weights_before = {k: v.clone() for k, v in system.state_dict().items()}
    trainer = quiet_trainer(max_steps=60)
    trainer.fit(system, DataLoader(UnpairedTensors(real, synthetic), batch_size=2, shuffle=True))
    checkpoint = tmp_path_factory.mktemp("cyclegan") / "cyclegan.ckpt"
    trainer.save_checkpoint(checkpoint)
    return {"system": system, "before": before, "translated_before": translated_before,
            "weights_before": weights_before, "probe": (probe_real, probe_synthetic), "checkpoint": checkpoint}


def test_training_reduces_the_cyclegan_loss_and_learns_the_colour_cast(trained):
    system, (probe_real, probe_synthetic) = trained["system"], trained["probe"]
    with torch.no_grad():
        after, _, _ = system.generator_losses(probe_real, probe_synthetic)
        translated = system(probe_synthetic)
    before = trained["before"]
    assert float(after["total"]) < 0.8 * float(before["total"])
    for term in ("cycle_synthetic", "cycle_real", "identity_real", "identity_synthetic"):
        assert float(after[term]) < float(before[term])
    # The translated synthetic images take on the real set's colours (the cast is what D sees).
    real_colour = probe_real.mean((0, 2, 3))
    untranslated_gap = (probe_synthetic.mean((0, 2, 3)) - real_colour).norm()
    gap_before = (trained["translated_before"].mean((0, 2, 3)) - real_colour).norm()
    gap_after = (translated.mean((0, 2, 3)) - real_colour).norm()
    assert gap_after < 0.5 * untranslated_gap and gap_after < 0.5 * gap_before


def test_both_optimisers_step(trained):
    state, before = trained["system"].state_dict(), trained["weights_before"]
    for prefix in ("g_synthetic_to_real.", "g_real_to_synthetic.", "d_real.", "d_synthetic."):
        changed = [k for k in state if k.startswith(prefix) and not torch.equal(state[k], before[k])]
        assert changed, f"{prefix} weights did not change"


def test_load_from_checkpoint_round_trip(trained):
    system = trained["system"]
    loaded = CycleGANSystem.load_from_checkpoint(trained["checkpoint"], map_location="cpu")
    assert dict(loaded.hparams) == dict(system.hparams)
    x = patterns(2, 32, 9)
    with torch.no_grad():
        for name in ("g_synthetic_to_real", "g_real_to_synthetic", "d_real", "d_synthetic"):
            assert torch.equal(getattr(loaded.eval(), name)(x), getattr(system.eval(), name)(x)), name
        # sim2real loads only the synthetic -> real generator, frozen
        generator = load_generator(trained["checkpoint"])
        assert torch.equal(generator(x), system.g_synthetic_to_real(x))
    assert not any(p.requires_grad for p in generator.parameters())


def test_load_generator_refuses_other_checkpoints(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.zeros(1)}, "hyper_parameters": {"lr": 1.0}}, path)
    with pytest.raises(Sim2RealCheckpointError, match="not a CycleGANSystem checkpoint"):
        load_generator(path)
    with pytest.raises(FileNotFoundError, match="missing.ckpt"):
        load_generator(tmp_path / "missing.ckpt")


# ------------------------------------------------------------------------- online transform
class Negate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def imagenet(pixels01: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels01 - mean) / std


def test_transform_normalisation_by_hand():
    pixels = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(Sim2RealTransform(nn.Identity())(imagenet(pixels)), imagenet(pixels), atol=1e-5)
    # negating in [-1, 1] is 1 - p in [0, 1]
    assert torch.allclose(Sim2RealTransform(Negate())(imagenet(pixels)), imagenet(1 - pixels), atol=1e-5)


def test_transform_is_deterministic_and_ignores_train_mode():
    generator = ResnetGenerator(ngf=4, n_blocks=1, norm="batch")
    generator.train()(torch.randn(4, 3, 32, 32))  # running statistics that differ from batch statistics
    transform = Sim2RealTransform(generator).train()  # a parent module's train() must not reach the generator
    batch = imagenet(torch.rand(3, 3, 30, 30, generator=torch.Generator().manual_seed(1)))  # 30: padded to 32
    first, second = transform(batch), transform(batch)
    assert first.shape == batch.shape and torch.equal(first, second)
    # no batch statistics: a row does not depend on the others (up to the kernels' float rounding)
    assert torch.allclose(transform(batch[:1]), first[:1], atol=1e-5, rtol=0)
    assert not first.requires_grad


def test_only_synthetic_rows_are_translated():
    img = imagenet(torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(2)))
    transform = Sim2RealTransform(Negate())
    out = translate_synthetic_rows(img, torch.tensor([False, True, False, True]), transform)
    assert torch.equal(out[[0, 2]], img[[0, 2]])
    assert torch.allclose(out[[1, 3]], transform(img[[1, 3]]))
    assert translate_synthetic_rows(img, torch.zeros(4, dtype=torch.bool), transform) is img


# -------------------------------------------------------------------------- offline translation
def crop_cache(tmp_path, name: str, seed: int, n: int = 6, missing: tuple[int, ...] = ()) -> tuple[SampleIndex, str]:
    """A crop cache (crop_res 32) of ``n`` frames; frames in ``missing`` are never written."""
    base = synthesize_index(n, np.random.default_rng(seed), dataset=name)
    rng = np.random.default_rng(seed)
    columns = dict(base.columns)
    columns["image_path"] = encode_strings([f"{name}/{i:03d}.jpg" for i in range(n)])
    columns["image_size"] = np.tile(np.array([96, 72], np.int32), (n, 1))
    columns["bbox_xywh"] = np.column_stack([rng.uniform(5, 40, (n, 2)), rng.uniform(15, 30, (n, 2))]).astype(np.float32)
    index = SampleIndex(columns, base.meta)
    y, x = np.mgrid[0:72, 0:96]
    for i in range(n):
        if i in missing:
            continue
        path = tmp_path / "frames" / index.image_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        frame = np.stack([127 + 90 * np.sin(x / (7.0 + i)), 127 + 90 * np.cos(y / 9.0), 60 + 0 * x], -1)
        Image.fromarray(frame.astype(np.uint8)).save(path, quality=95)
    out = tmp_path / f"crops_{name}"
    build_crop_cache(index, tmp_path / "frames", out, crop_res=32, progress=False, max_bad_fraction=0.5)
    return index, str(out)


def test_translated_cache_reads_back_row_for_row(trained, tmp_path):
    index, source_dir = crop_cache(tmp_path, "gta", seed=0, missing=(2,))
    out = translate_crop_cache(source_dir, tmp_path / "translated", trained["checkpoint"], batch_size=4,
                               progress=False)
    source, read_back = CropCache(source_dir), CropCache(tmp_path / "translated")
    read_back.check(index, crop_res=32, margin=source.margin)  # the reader takes it for the same index
    assert len(read_back) == len(source) == len(out) == 6
    assert read_back.bad_rows == source.bad_rows and set(source.bad_rows) == {2}
    generator = load_generator(trained["checkpoint"])
    for i in range(len(source)):
        assert np.array_equal(read_back.affine(i), source.affine(i))
        if i == 2:
            continue
        crop, _ = source.read(i)
        translated, _ = read_back.read(i)
        with torch.no_grad():  # independent arithmetic: uint8 -> [-1, 1] -> G -> truncated uint8
            x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float() / 127.5 - 1
            expected = ((generator(x)[0] + 1) / 2 * 255).permute(1, 2, 0).numpy().astype(np.uint8)
        buffer = io.BytesIO()  # ... stored as JPEG at the source cache's quality
        Image.fromarray(expected).save(buffer, format="JPEG", quality=source.manifest["quality"])
        expected = np.asarray(Image.open(buffer).convert("RGB"), float)
        assert np.abs(translated - expected).mean() < 0.5
        assert np.abs(translated.astype(float) - crop).mean() > 5.0  # and it did translate


def test_translation_resumes_and_refuses_another_generator(trained, tmp_path, monkeypatch):
    _, source_dir = crop_cache(tmp_path, "gta", seed=1)
    generator = load_generator(trained["checkpoint"])
    reference = translate_crop_cache(source_dir, tmp_path / "once", generator, chunk_rows=2, progress=False)
    calls, real_translate = [], sim2real._translate_rows

    def failing_on_second_chunk(source, rows, *args):
        calls.append(rows.start)
        if len(calls) == 2 and fail:
            raise KeyboardInterrupt("interrupted")
        return real_translate(source, rows, *args)

    monkeypatch.setattr(sim2real, "_translate_rows", failing_on_second_chunk)
    fail = True
    with pytest.raises(KeyboardInterrupt):
        translate_crop_cache(source_dir, tmp_path / "resumed", generator, chunk_rows=2, progress=False)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    fail, calls[:] = False, []
    resumed = translate_crop_cache(source_dir, tmp_path / "resumed", generator, chunk_rows=2, progress=False)
    assert calls == [2, 4]  # the first chunk was kept
    assert (tmp_path / "resumed" / "crops.bin").read_bytes() == (tmp_path / "once" / "crops.bin").read_bytes()
    assert len(resumed) == len(reference)
    calls[:] = []
    translate_crop_cache(source_dir, tmp_path / "resumed", generator, chunk_rows=2, progress=False)
    assert calls == []  # finished: returned as is
    with pytest.raises(CropCacheMismatchError, match="another translation"):
        translate_crop_cache(source_dir, tmp_path / "resumed", ResnetGenerator(ngf=8, n_blocks=2), progress=False)


def test_apply_sim2real_offline_and_online(trained, tmp_path):
    _, real_dir = crop_cache(tmp_path, "real", seed=2)
    _, gta_dir = crop_cache(tmp_path, "gta", seed=3)
    specs = {"real": SourceSpec("real", "idx/real", crop_cache_dir=real_dir, role="real"),
             "gta": SourceSpec("gta", "idx/gta", crop_cache_dir=gta_dir, role="synthetic")}
    ckpt = str(trained["checkpoint"])
    assert apply_sim2real(None, "offline", specs, tmp_path / "cache").train_sources == specs
    offline = apply_sim2real(ckpt, "offline", specs, tmp_path / "cache", progress=False)
    assert offline.train_sources["real"] == specs["real"]
    assert offline.train_sources["gta"].crop_cache_dir == offline.translated["gta"] != gta_dir
    assert offline.translated["gta"].startswith(str(tmp_path / "cache" / "crops_sim2real"))
    made_from = CropCache(offline.translated["gta"]).manifest["sim2real"]["source_cache"]
    assert made_from == str(CropCache(gta_dir).directory.resolve())
    online = apply_sim2real(ckpt, "online", specs, tmp_path / "cache")
    assert online.train_sources == specs and online.synthetic_source_ids == [1]
    assert isinstance(online.transform, Sim2RealTransform)
    with pytest.raises(ValueError, match="adaptation.sim2real_mode"):
        apply_sim2real(ckpt, "both", specs, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="adaptation.sim2real_checkpoint"):
        apply_sim2real(str(tmp_path / "nope.ckpt"), "online", specs, tmp_path / "cache")


# ---------------------------------------------------------------------- data + train function
def test_unpaired_dataset_and_train_function(tmp_path):
    _, real_dir = crop_cache(tmp_path, "real", seed=4, missing=(0,))
    _, gta_dir = crop_cache(tmp_path, "gta", seed=5, n=3)
    dataset = UnpairedCropDataset(CropPool([real_dir], "real"), CropPool([gta_dir], "synthetic"), flip=False)
    assert len(dataset) == 5  # the unreadable real row is left out; the larger pool sets the length
    item = dataset[4]
    assert item["real"].shape == item["synthetic"].shape == (3, 32, 32)
    expected = torch.from_numpy(CropCache(real_dir).read(5)[0].copy()).permute(2, 0, 1).float() / 127.5 - 1
    assert torch.allclose(item["real"], expected)  # pool row 4 is cache row 5 (row 0 was unreadable)
    ckpt = train_cyclegan([real_dir], [gta_dir], tmp_path / "run", batch_size=2, max_epochs=2, epoch_length=4,
                          accelerator="cpu", devices=1, system_args=TINY, progress=False, log_every_n_steps=1)
    loaded = CycleGANSystem.load_from_checkpoint(ckpt, map_location="cpu")
    assert loaded.hparams.ngf == 8 and loaded.hparams.epochs_constant == 1 and loaded.hparams.epochs_decay == 1
    assert torch.load(ckpt, weights_only=True)["global_step"] == 8  # 2 epochs x 2 batches x 2 optimisers


# ---------------------------------------------------------------------- end to end (tiny world)
@pytest.mark.slow
def test_command_on_a_config_then_offline_sim2real_feeds_the_datamodule(tiny_config, tmp_path):
    """The command trains on an experiment's own crop caches; the offline translation of its
    synthetic source then loads through MixedDataModule like any crop cache."""
    from gtahuman.sim2real.cyclegan import main
    from gtahuman.data.datamodule import MixedDataModule
    from gtahuman.run_data import ensure_assets, prepare_source

    overrides = ["data.miniworld=tiny", "data.crop_res=96", f"run.cache_dir={tiny_config().run.cache_dir}"]
    checkpoint = main(["--config", *overrides, "--out", str(tmp_path / "cyclegan"), "--epochs", "1",
                       "--epoch-length", "4", "--batch-size", "2", "--ngf", "8", "--n-blocks", "2", "--ndf", "8",
                       "--accelerator", "cpu", "--devices", "1", "--no-progress"])
    cfg = tiny_config()
    body_dir = ensure_assets(cfg)
    specs = {name: prepare_source(name, src, cfg, body_dir) for name, src in cfg.data.train.items()}
    setup = apply_sim2real(str(checkpoint), "offline", specs, cfg.run.cache_dir, progress=False)
    assert set(setup.translated) == {"gta"}
    assert len(CropCache(setup.translated["gta"])) == len(CropCache(specs["gta"].crop_cache_dir))
    dm = MixedDataModule(train_sources=list(setup.train_sources.values()), batch_size=4, img_res=64, augment=False,
                         sampler_args={"partition": [1.0] * len(specs)})
    dm.setup("fit")
    gta = next(p for p in dm._train_parts if p.name == "gta")
    assert str(gta.crop_cache.directory) == setup.translated["gta"]
    assert gta[0]["img"].shape == (3, 64, 64) and float(gta[0]["valid"]) == 1.0
