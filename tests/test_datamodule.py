"""IndexDataset and MixedDataModule: both pixel paths agree, unreadable images are masked,
counted and capped, mixtures hold their ratios, adaptation pairs cycle, batches split across
ranks, resume continues with exactly the remaining samples, eval sets are visited once.

Tiny indices and JPEG frames are written to tmp_path; image resolutions are small for speed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from gtahuman.data.crop_cache import build_crop_cache
from gtahuman.data.datamodule import MixedDataModule
from gtahuman.data.source_spec import SourceSpec
from gtahuman.data.datasets import IndexDataset, TooManyBadSamplesError
from gtahuman.data.index import SampleIndex, encode_strings
from gtahuman.data.index_synthetic import synthesize_index
from gtahuman.data.transforms import IMAGENET_MEAN, IMAGENET_STD, AugmentConfig, TestTransform


def smooth_frame(width: int, height: int, seed: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    channels = [127 + 100 * np.sin(x / 23.0 + seed), 127 + 100 * np.cos(y / 17.0 - seed),
                127 + 80 * np.sin((x + y) / 31.0 + 2 * seed)]
    return np.clip(np.stack(channels, -1), 0, 255).astype(np.uint8)


def make_source(root, n: int, size=(96, 72), name="src", box=None, seed=0) -> SampleIndex:
    """An index of n frames under root/frames with keypoints inside the box; saved to root/index."""
    base = synthesize_index(n, np.random.default_rng(seed), dataset=name, domain=name)
    width, height = size
    box = box or (width * 0.25, height * 0.15, width * 0.5, height * 0.7)
    columns = dict(base.columns)
    columns["image_path"] = encode_strings([f"frames/{i:04d}.jpg" for i in range(n)])
    columns["image_size"] = np.tile(np.array(size, np.int32), (n, 1))
    columns["bbox_xywh"] = np.tile(np.array(box, np.float32), (n, 1))
    unit = np.random.default_rng(seed + 1).random((n, 54, 2))
    columns["keypoints2d"][..., :2] = np.array(box[:2]) + unit * np.array(box[2:])
    index = SampleIndex(columns, base.meta)
    for i in range(n):
        path = root / index.image_path(i)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(smooth_frame(width, height, seed * 100 + i)).save(path, quality=95)
    index.save(root / "index")
    return SampleIndex.load(root / "index")


def spec(root, name, role="real", cache=False) -> SourceSpec:
    return SourceSpec(name=name, index_dir=str(root / "index"), image_root=str(root),
                      crop_cache_dir=str(root / "cache") if cache else None, role=role)


# -- dataset ---------------------------------------------------------------------------------------
def test_crop_cache_and_full_frame_give_the_same_sample(tmp_path):
    index = make_source(tmp_path, 3, size=(320, 240), box=(100, 60, 80, 120))
    build_crop_cache(index, tmp_path, tmp_path / "cache", crop_res=192, margin=1.5, quality=95, progress=False)
    transform = TestTransform(AugmentConfig(img_res=96))
    full = IndexDataset(index, transform=transform, image_root=tmp_path, sample_id_offset=10, source_id=2)
    cached = IndexDataset(index, transform=transform, crop_cache=tmp_path / "cache", sample_id_offset=10, source_id=2)
    a, b, other = full[1], cached[1], cached[2]
    assert (a["img"] - b["img"]).abs().mean() < 0.06  # normalised units (1 grey level = 0.017)
    assert (a["img"] - other["img"]).abs().mean() > 0.3  # the tolerance tells samples apart
    torch.testing.assert_close(a["keypoints2d"], b["keypoints2d"], atol=1e-4, rtol=0)
    torch.testing.assert_close(a["crop_affine"], b["crop_affine"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(b["center"], torch.tensor([140.0, 120.0]))
    assert b["scale"] == 120 and b["valid"] == 1 and b["sample_id"] == 11 and b["source"] == 2
    # normalised keypoints are the full-frame ones through the crop of side 120 around (140, 120)
    kp = index["keypoints2d"][1]
    expected = (kp[:, :2] - np.array([140 - 60, 120 - 60])) / 120 * 2 - 1
    torch.testing.assert_close(b["keypoints2d"][:, :2], torch.as_tensor(expected, dtype=torch.float32), atol=1e-4, rtol=0)


def test_reduced_full_frame_decoding_matches_full_decoding(tmp_path):
    index = make_source(tmp_path, 1, size=(1280, 960), box=(300, 200, 480, 640))
    transform = TestTransform(AugmentConfig(img_res=64))  # 640 px box -> decoded at 1/8 (80 px >= 64)
    reduced = IndexDataset(index, transform=transform, image_root=tmp_path)[0]
    full = IndexDataset(index, transform=transform, image_root=tmp_path, reduced_decoding=False)[0]
    assert (reduced["img"] - full["img"]).abs().mean() < 0.06
    torch.testing.assert_close(reduced["keypoints2d"], full["keypoints2d"], atol=1e-4, rtol=0)


def test_missing_image_is_masked_counted_once_and_capped(tmp_path):
    index = make_source(tmp_path, 4)
    missing = [tmp_path / index.image_path(i) for i in (1, 3)]
    for path in missing:
        path.unlink()
    dataset = IndexDataset(index, transform=TestTransform(AugmentConfig(img_res=32)), image_root=tmp_path,
                           max_bad_samples=1)
    sample = dataset[1]
    black = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))[:, None, None].expand(3, 32, 32)
    torch.testing.assert_close(sample["img"], black)
    assert sample["valid"] == 0 and sample["has_smpl"] == 0 and sample["has_keypoints3d"] == 0
    assert torch.all(sample["keypoints2d"] == 0)
    assert dataset[0]["valid"] == 1
    dataset[1]  # the same sample again is not a second bad sample
    assert dataset.bad.count == 1
    with pytest.raises(TooManyBadSamplesError, match=str(missing[1])):
        dataset[3]


def test_bad_sample_counter_is_shared_by_loader_workers(tmp_path):
    index = make_source(tmp_path, 6)
    for i in (0, 5):
        (tmp_path / index.image_path(i)).unlink()
    dataset = IndexDataset(index, transform=TestTransform(AugmentConfig(img_res=16)), image_root=tmp_path)
    loader = DataLoader(dataset, batch_size=2, num_workers=2)
    valid = torch.cat([batch["valid"] for batch in loader])
    assert valid.tolist() == [0, 1, 1, 1, 1, 0]
    assert dataset.bad.count == 2  # counted in the workers, visible in the parent


# -- datamodule ------------------------------------------------------------------------------------
def two_sources(tmp_path, n_real=30, n_synth=10, cache=False):
    real, synth = tmp_path / "real", tmp_path / "synth"
    make_source(real, n_real, name="real", seed=1)
    index = make_source(synth, n_synth, name="synth", seed=2)
    if cache:
        build_crop_cache(index, synth, synth / "cache", crop_res=48, progress=False)
    return [spec(real, "real"), spec(synth, "synth", role="synthetic", cache=cache)]


def ids_of(loader) -> list[int]:
    return [int(i) for batch in loader for i in batch["sample_id"]]


def test_blended_epoch_realises_the_asked_mixture(tmp_path):
    dm = MixedDataModule(two_sources(tmp_path, cache=True), sampler="mixture",
                         sampler_args={"real_ratio": 0.25, "synthetic_sources": ["synth"]},
                         epoch_length=40, batch_size=8, img_res=24)
    batches = list(dm.train_dataloader())
    sources = torch.cat([b["source"] for b in batches])
    assert len(batches) == 5 and sources.tolist().count(0) == 10 and sources.tolist().count(1) == 30
    ids = torch.cat([b["sample_id"] for b in batches])
    assert torch.all((ids < 30) == (sources == 0))  # sample ids are global: real 0..29, synth 30..39
    assert dm.describe()["samplers"]["train"]["counts"] == {"real": 10, "synth": 30}
    assert batches[0]["img"].shape == (8, 3, 24, 24) and torch.all(torch.cat([b["valid"] for b in batches]) == 1)


def test_adaptation_pairs_source_and_cycling_target(tmp_path):
    """adaptation_batch='each': a whole batch per domain, the real side's epoch (the uncontrolled protocol)."""
    dm = MixedDataModule(two_sources(tmp_path, n_real=20, n_synth=6), mode="adaptation", batch_size=4, img_res=16,
                         adaptation_batch="each")
    combined = dm.train_dataloader()
    target_ids = []
    steps = 0
    for batch, _, _ in iter(combined):
        assert set(batch) == {"source", "target"}
        assert batch["source"]["img"].shape == batch["target"]["img"].shape == (4, 3, 16, 16)
        assert torch.all(batch["source"]["source"] == 0) and torch.all(batch["target"]["source"] == 1)
        target_ids += batch["target"]["sample_id"].tolist()
        steps += 1
    assert steps == 5  # the real source's 20 samples set the epoch
    counts = np.bincount(np.array(target_ids) - 20, minlength=6)
    assert counts.sum() == 20 and counts.min() >= 3 and counts.max() <= 4  # 6 targets cycled 3-4 times


def test_adaptation_split_batch_matches_a_blended_step_and_epoch(tmp_path):
    """adaptation_batch='split' (the default): half the batch per domain, as many steps per epoch
    as the blended run over the same sources (epoch = the largest source, 30 samples)."""
    sources = two_sources(tmp_path, n_real=12, n_synth=30)
    blended = MixedDataModule(sources, batch_size=6, img_res=16, augment=False)
    blended_steps = sum(1 for _ in blended.train_dataloader())
    dm = MixedDataModule(sources, mode="adaptation", batch_size=6, img_res=16, augment=False)
    assert dm.train_batch() == 3
    steps, real, synthetic = 0, 0, 0
    for batch, _, _ in iter(dm.train_dataloader()):
        assert batch["source"]["img"].shape[0] == batch["target"]["img"].shape[0] == 3
        real, synthetic, steps = real + 3, synthetic + 3, steps + 1
    assert steps == blended_steps == 5 and real == synthetic == 15
    with pytest.raises(ValueError, match="even data.batch_size"):
        MixedDataModule(sources, mode="adaptation", batch_size=5, img_res=16).train_batch()


def test_global_batch_is_split_across_ranks(tmp_path):
    sources = two_sources(tmp_path, n_real=16, n_synth=8)
    plans = []
    for rank in (0, 1):
        dm = MixedDataModule(sources, batch_size=8, world_size=2, rank=rank, img_res=16, augment=False)
        assert dm.per_rank_batch() == 4
        loader = dm.train_dataloader()
        assert loader.batch_size == 4
        plans.append(ids_of(loader))
    assert len(plans[0]) == len(plans[1]) == 8 and not set(plans[0]) & set(plans[1])
    with pytest.raises(ValueError, match="batch_size=7 .* world size 2"):
        MixedDataModule(sources, batch_size=7, world_size=2, rank=0).setup("fit")


def test_state_dict_resumes_with_the_remaining_samples(tmp_path):
    sources = two_sources(tmp_path, n_real=24, n_synth=8)
    kwargs = {"batch_size": 4, "img_res": 16, "augment": False, "seed": 3}
    first = MixedDataModule(sources, **kwargs)
    first.train_samplers()["train"].set_epoch(2)  # a later epoch, as Lightning would set it
    iterator = iter(first.train_dataloader())
    seen = [next(iterator)["sample_id"].tolist() for _ in range(2)]
    state = first.state_dict(batches_seen=2)
    remaining = [i for batch in iterator for i in batch["sample_id"].tolist()]

    resumed = MixedDataModule(sources, **kwargs)
    resumed.load_state_dict(state)  # before the loaders exist, as Lightning does
    assert ids_of(resumed.train_dataloader()) == remaining
    assert len(remaining) == 24 - 8 and not set(remaining) & {i for b in seen for i in b}


def test_lightning_checkpoint_mid_epoch_resumes_the_epoch(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Recorder(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1))
            self.ids: list[int] = []

        def training_step(self, batch, batch_idx):
            self.ids += batch["sample_id"].tolist()
            return (self.weight * batch["img"].mean()).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    sources = two_sources(tmp_path, n_real=16, n_synth=8)
    def make_dm() -> MixedDataModule:
        return MixedDataModule(sources, batch_size=4, img_res=16, augment=False)

    trainer_args = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
                    "enable_model_summary": False, "use_distributed_sampler": False, "default_root_dir": tmp_path}
    full = Recorder()
    L.Trainer(max_epochs=1, enable_checkpointing=False, **trainer_args).fit(full, make_dm())

    partial = Recorder()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2, save_top_k=-1)
    L.Trainer(max_steps=2, callbacks=[checkpoint], **trainer_args).fit(partial, make_dm())
    assert partial.ids == full.ids[:8]
    resumed = Recorder()
    L.Trainer(max_epochs=1, enable_checkpointing=False, **trainer_args).fit(
        resumed, make_dm(), ckpt_path=checkpoint.best_model_path or checkpoint.last_model_path)
    assert resumed.ids == full.ids[8:]


def test_eval_loaders_visit_each_sample_once(tmp_path):
    make_source(tmp_path / "val", 7, name="val", seed=5)
    val = {"val": spec(tmp_path / "val", "val")}
    seen = []
    for rank in (0, 1):
        dm = MixedDataModule(val_sets=val, batch_size=4, eval_batch_size=6, world_size=2, rank=rank, img_res=16)
        (loader,) = dm.val_dataloader()
        seen.append(ids_of(loader))
    assert seen[0] + seen[1] == list(range(7))  # contiguous blocks, in order, no padding
    assert MixedDataModule(val_sets=val, img_res=16).describe()["val"] == {"val": 7}


def test_augmentation_follows_the_epoch_in_persistent_workers(tmp_path):
    sources = two_sources(tmp_path, n_real=8, n_synth=4)

    def two_epochs(**loader_args) -> list[torch.Tensor]:
        # 12 = every sample once per epoch, so only the augmentation differs between epochs
        dm = MixedDataModule(sources, batch_size=4, img_res=16, augment=True, seed=7, epoch_length=12, **loader_args)
        loader, sampler = dm.train_dataloader(), dm.train_samplers()["train"]
        images = []
        for epoch in (0, 1):
            sampler.set_epoch(epoch)  # what Lightning does at each epoch start
            batches = list(loader)
            order = torch.argsort(torch.cat([b["sample_id"] for b in batches]))
            assert torch.equal(torch.cat([b["sample_id"] for b in batches])[order], torch.arange(12))
            images.append(torch.cat([b["img"] for b in batches])[order])
        return images

    in_process = two_epochs()
    in_workers = two_epochs(num_workers=2, persistent_workers=True)
    assert not torch.allclose(in_process[0], in_process[1])  # a new augmentation draw each epoch
    for a, b in zip(in_process, in_workers):
        torch.testing.assert_close(a, b)


def test_configuration_errors_name_the_argument(tmp_path):
    sources = two_sources(tmp_path, n_real=4, n_synth=4)
    with pytest.raises(ValueError, match="finetune.*epoch_length"):
        MixedDataModule(sources, mode="finetune")
    with pytest.raises(ValueError, match="role 'synthetic'"):
        MixedDataModule(sources[:1], mode="adaptation", batch_size=2).train_dataloader()
    with pytest.raises(ValueError, match=r"sampler_args may not set \['seed'\]"):
        MixedDataModule(sources, sampler_args={"seed": 1}, batch_size=2).train_dataloader()
    with pytest.raises(ValueError, match="sampler 'scarcity' takes no epoch_length"):
        MixedDataModule(sources, mode="finetune", epoch_length=8, sampler="scarcity", batch_size=2,
                        sampler_args={"factor": "truncation", "bins": [0, 1], "keep_fraction": 1}).train_dataloader()
    finetune = MixedDataModule(sources, mode="finetune", epoch_length=6, batch_size=2, img_res=16)
    assert finetune.describe()["samplers"]["train"]["global_length"] == 6


def test_train_probes_follow_the_val_sets_with_fixed_unaugmented_train_rows(tmp_path):
    """data.train_probe: a fixed subset of every train source with SMPL, named probe_<source>,
    evaluated after the val sets (the first val set still picks the best checkpoint)."""
    real_root, synth_root, val_root = tmp_path / "real", tmp_path / "synth", tmp_path / "val"
    make_source(real_root, 20, name="real")
    synth = make_source(synth_root, 9, name="synth", seed=3)
    columns = dict(synth.columns)
    columns["has_smpl"] = np.zeros(9, bool)  # keypoints only: nothing a probe could evaluate
    SampleIndex(columns, synth.meta).save(synth_root / "index")
    make_source(val_root, 5, name="val", seed=5)
    dm = MixedDataModule([spec(real_root, "real"), spec(synth_root, "synth", role="synthetic")],
                         val_sets={"held_out": spec(val_root, "val")}, batch_size=4, img_res=32, train_probe=6,
                         augment=True)
    assert dm.eval_set_names("val") == ["held_out", "probe_real"]
    loaders = dm.val_dataloader()
    assert [len(loader.dataset) for loader in loaders] == [5, 6]
    has_smpl = np.flatnonzero(np.asarray(SampleIndex.load(real_root / "index")["has_smpl"]))
    seen = torch.cat([batch["sample_id"].reshape(-1) for batch in loaders[1]]).tolist()
    assert len(set(seen)) == 6 and set(seen) <= set(has_smpl.tolist())  # train rows, ids unchanged
    again = torch.cat([batch["img"] for batch in dm.val_dataloader()[1]])
    first = torch.cat([batch["img"] for batch in loaders[1]])
    assert torch.equal(first, again)  # fixed and unaugmented: the same pixels every time
    assert MixedDataModule([spec(real_root, "real")], val_sets={"held_out": spec(val_root, "val")},
                           batch_size=4, img_res=32).eval_set_names("val") == ["held_out"]
    with pytest.raises(ValueError, match="train_probe"):
        MixedDataModule([spec(real_root, "real")], batch_size=4, train_probe=-1)


def test_uint8_training_crops_are_finished_by_the_system_as_the_cpu_path_finishes_them(tmp_path, toy_body_dir):
    from gtahuman.systems import HMRSystem
    sources = two_sources(tmp_path, n_real=8, n_synth=8, cache=True)
    kwargs = dict(sampler="mixture", sampler_args={"real_ratio": 0.5, "synthetic_sources": ["synth"]},
                  epoch_length=8, batch_size=8, img_res=24, val_sets={"val": sources[0]})
    on_cpu, on_device = MixedDataModule(sources, **kwargs), MixedDataModule(sources, uint8_images=True, **kwargs)
    on_cpu.setup("fit")
    on_device.setup("fit")
    expected, left = next(iter(on_cpu.train_dataloader())), next(iter(on_device.train_dataloader()))
    assert left["img"].dtype == torch.uint8 and left["colour"].shape == (8, 3) and "colour" not in expected
    assert next(iter(on_device.val_dataloader()[0]))["img"].dtype == torch.float32  # evaluation: finished on the CPU
    system = HMRSystem(str(toy_body_dir), backbone="resnet10t", img_res=24)
    finished = system.on_after_batch_transfer(left, 0)
    assert torch.equal(finished["sample_id"], expected["sample_id"])
    # the same augmentation draws; OpenCV's uint8 warp is shared, so only float rounding differs
    torch.testing.assert_close(finished["img"], expected["img"], atol=1e-5, rtol=0)
