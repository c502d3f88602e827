"""Paper Table 3 experiment configs: one per row, real data and mini world, each training on the
row's sources with VIBE's settings; real rows stop until SMPL and the frame model are given."""
from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from gtahuman.config import ConfigError, experiment_names, load_config, require_complete
from gtahuman.train import train
from gtahuman.video.train import source_ratios

# Paper Table 3: row -> (MI3, 3DPW, GTA-Human) used for training, and the mini world's stand-ins
ROWS = {
    "table3_mi3": ({"mpi_inf_3dhp"}, {"real_indoor"}),
    "table3_gta_subsampled": ({"gta"}, {"gta"}),
    "table3_3dpw": ({"pw3d"}, {"wild"}),
    "table3_gta": ({"gta"}, {"gta"}),
    "table3_3dpw_gta": ({"pw3d", "gta"}, {"wild", "gta"}),
    "table3_mi3_3dpw_gta": ({"mpi_inf_3dhp", "pw3d", "gta"}, {"real_indoor", "wild", "gta"}),
}


def test_every_table3_row_has_a_real_and_a_mini_config() -> None:
    names = {n for n in experiment_names() if n.startswith("table3_")}
    assert names == set(ROWS) | {f"{n}_mini" for n in ROWS}


@pytest.mark.parametrize("row", list(ROWS))
def test_real_row_uses_the_papers_sources_and_vibes_settings(row: str) -> None:
    cfg = load_config([f"experiment={row}"])
    sources, _ = ROWS[row]
    assert cfg.task == "video" and set(cfg.data.train) == sources and cfg.data.miniworld is None
    assert list(cfg.data.test) == ["pw3d_test"] and cfg.eval.protocol == "3dpw"
    v = cfg.video
    assert (v.window, v.hidden_size, v.num_layers, v.bidirectional, v.residual) == (16, 1024, 2, False, True)
    assert (cfg.data.batch_size, cfg.data.epoch_length, cfg.trainer.max_epochs, cfg.optim.lr) == (32, 16000, 30, 5e-5)
    w = cfg.model.loss_weights
    assert (w.keypoints2d, w.keypoints3d, w.smpl_pose, w.smpl_betas, w.camera) == (300, 300, 60, 0.06, 0)
    assert OmegaConf.is_missing(cfg.video, "frame_checkpoint") and OmegaConf.is_missing(cfg.body, "model_dir")
    gta_star = row == "table3_gta_subsampled"
    assert (v.subsample_source, v.subsample_poses) == (("gta", 96000) if gta_star else (None, None))
    ratios = source_ratios(cfg)
    if len(sources) == 1:
        assert ratios is None
    else:  # real : GTA-Human = 1 : 1
        assert sum(ratios.values()) == pytest.approx(1.0) and ratios["gta"] == pytest.approx(0.5)
    with pytest.raises(ConfigError, match=r"body\.model_dir.*video\.frame_checkpoint"):
        train(cfg)  # stops before generating, preparing or writing anything
    require_complete(load_config([f"experiment={row}", "body.model_dir=/smpl", "video.frame_checkpoint=/spin.pt"]))


@pytest.mark.parametrize("row", list(ROWS))
def test_mini_row_runs_the_same_row_on_the_mini_world(row: str) -> None:
    cfg = load_config([f"experiment={row}_mini"])
    _, sources = ROWS[row]
    require_complete(cfg)  # nothing to give: the frame model is trained first when null
    assert cfg.task == "video" and set(cfg.data.train) == sources and cfg.data.miniworld == "default"
    assert cfg.body.model_dir is None and cfg.video.frame_checkpoint is None and cfg.trainer.accelerator == "cpu"
    assert list(cfg.data.test) == ["wild_test"] and len(cfg.data.val) == 0  # wild_val trains the 3DPW stand-in
    if "wild" in sources:
        assert cfg.data.train.wild.path.endswith("wild/wild_val.npz")
    if row == "table3_gta_subsampled":
        assert cfg.video.subsample_source == "gta" and cfg.video.subsample_poses is None
        assert cfg.video.subsample_like.path.endswith("real_indoor/real_indoor_train.npz")
    else:
        assert cfg.video.subsample_source is None
    ratios = source_ratios(cfg)
    assert ratios is None if len(sources) == 1 else ratios["gta"] == pytest.approx(0.5)
