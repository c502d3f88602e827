"""Tests for gtahuman.systems.checkpoint_import: SPIN, mmhuman3d and suite layouts.

Checkpoints are made in the test from a system's own weights, renamed to the other layout;
importing them into a differently initialised system must reproduce its outputs exactly.
"""
from __future__ import annotations

import re

import pytest
import torch

from gtahuman.systems import (
    CheckpointImportError,
    CheckpointImportWarning,
    HMRSystem,
    detect_format,
    import_hmr_state_dict,
)

# Our discriminator names -> mmhuman3d's SMPLDiscriminator names (written out independently of
# the module's table, from mmhuman3d's pose_discriminator.py sub-module names).
OURS_TO_MMHUMAN3D_DISC = {
    r"joint_embed\.0\.": "pose_discriminator.conv_blocks.conv_0.",
    r"joint_embed\.2\.": "pose_discriminator.conv_blocks.conv_1.",
    r"joint_heads\.(\d+)\.": r"pose_discriminator.fc_layer.\1.",
    r"full_pose\.0\.": "full_pose_discriminator.fc_blocks.regressor_fc_0.",
    r"full_pose\.2\.": "full_pose_discriminator.fc_blocks.regressor_fc_1.",
    r"full_pose\.4\.": "full_pose_discriminator.fc_blocks.regressor_fc_2.",
    r"shape\.0\.": "shape_discriminator.fc_blocks.regressor_fc_0.",
    r"shape\.2\.": "shape_discriminator.fc_blocks.regressor_fc_1.",
}


@pytest.fixture(scope="module", autouse=True)
def one_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def body_dir(toy_body_dir) -> str:
    return str(toy_body_dir)


def make_system(body_dir: str, seed: int, **kwargs) -> HMRSystem:
    torch.manual_seed(seed)
    return HMRSystem(body_dir, backbone="resnet10t", img_res=64, **kwargs).eval()


def outputs(system: HMRSystem) -> list[torch.Tensor]:
    images = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output, features = system(images)
    return [output.rotmat, output.betas, output.cam, features]


def to_spin(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    spin = {}
    for key, value in state.items():
        if key.startswith("backbone.model."):
            spin[key[len("backbone.model."):]] = value.clone()
        elif key.startswith("head."):
            spin[key[len("head."):]] = value.clone()
    return spin


def to_mmhuman3d(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        if key.startswith("backbone.model."):
            out["backbone." + key[len("backbone.model."):]] = value.clone()
        elif key.startswith("head."):
            out[key] = value.clone()
        elif key.startswith("discriminator."):
            rest = key[len("discriminator."):]
            for pattern, replacement in OURS_TO_MMHUMAN3D_DISC.items():
                rest, count = re.subn("^" + pattern, replacement, rest)
                if count:
                    break
            out["discriminator." + rest] = value.clone()
    return out


def assert_same_outputs(a: HMRSystem, b: HMRSystem) -> None:
    for x, y in zip(outputs(a), outputs(b)):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_spin_layout_reproduces_outputs_and_names_unmatched_keys(body_dir: str, tmp_path) -> None:
    source, target = make_system(body_dir, 0), make_system(body_dir, 1)
    assert not torch.equal(outputs(source)[0], outputs(target)[0])
    spin = to_spin(source.state_dict())
    assert "fc1.weight" in spin and "init_pose" in spin and "conv1.0.weight" in spin
    spin["fc.weight"] = torch.zeros(1000, 512)  # an ImageNet classifier SPIN never had
    path = tmp_path / "spin.pt"
    torch.save({"model": {f"module.{k}": v for k, v in spin.items()}, "optimizer": {}}, path)
    with pytest.warns(CheckpointImportWarning, match=r"UNMATCHED in file .*fc\.weight"):
        report = import_hmr_state_dict(target, path)
    assert report.fmt == "spin" and report.unmatched == ["fc.weight"]
    assert not report.missing and not report.shape_mismatch
    assert "head.decpose.weight" in report.matched and "backbone.model.conv1.0.weight" in report.matched
    assert_same_outputs(source, target)
    with pytest.raises(CheckpointImportError, match="fc.weight"):
        import_hmr_state_dict(target, path, strict=True)


def test_shape_mismatch_and_missing_keys_are_reported(body_dir: str) -> None:
    source, target = make_system(body_dir, 0), make_system(body_dir, 1)
    before = target.state_dict()["head.fc1.weight"].clone()
    spin = {k: v for k, v in to_spin(source.state_dict()).items() if not k.startswith("layer4.")}
    spin["fc1.weight"] = torch.zeros(1024, 10)
    with pytest.warns(CheckpointImportWarning) as caught:
        report = import_hmr_state_dict(target, spin, fmt="spin")
    assert report.shape_mismatch == ["head.fc1.weight: file (1024, 10) vs system (1024, 669)"]
    assert report.missing and all(k.startswith("backbone.model.layer4.") for k in report.missing)
    assert "SHAPE MISMATCH" in str(caught[0].message) and "backbone.model.layer4.0.conv1.weight" in str(caught[0].message)
    torch.testing.assert_close(target.state_dict()["head.fc1.weight"], before)  # left as it was


def test_mmhuman3d_layout_with_discriminator(body_dir: str, tmp_path) -> None:
    source, target = make_system(body_dir, 0, variant="hmr"), make_system(body_dir, 1, variant="hmr")
    path = tmp_path / "mmhuman3d.pth"
    state = to_mmhuman3d(source.state_dict())
    torch.save({"meta": {}, "state_dict": state}, path)
    with torch.no_grad():
        rotations, betas = torch.linalg.qr(torch.randn(2, 23, 3, 3))[0], torch.randn(2, 10)
        assert not torch.equal(source.discriminator(rotations, betas), target.discriminator(rotations, betas))
    report = import_hmr_state_dict(target, path)
    assert report.fmt == "mmhuman3d" and report.clean, report.summary()
    assert "discriminator.joint_heads.22.weight" in report.matched
    assert_same_outputs(source, target)
    with torch.no_grad():
        torch.testing.assert_close(source.discriminator(rotations, betas), target.discriminator(rotations, betas))
    state["neck.gap.weight"] = torch.zeros(1)  # a part this system does not have
    with pytest.warns(CheckpointImportWarning, match=r"neck\.gap\.weight"):
        report = import_hmr_state_dict(target, {"state_dict": state})
    assert report.fmt == "mmhuman3d" and report.unmatched == ["neck.gap.weight"]


def test_spin_file_into_adversarial_system_lists_discriminator_as_not_in_format(body_dir: str) -> None:
    source, target = make_system(body_dir, 0), make_system(body_dir, 1, variant="hmr")
    report = import_hmr_state_dict(target, to_spin(source.state_dict()), strict=True)  # clean: no raise
    assert report.clean and report.not_in_format and all(k.startswith("discriminator.") for k in report.not_in_format)
    assert_same_outputs(source, target)


def test_suite_layout_and_format_detection(body_dir: str) -> None:
    source, target = make_system(body_dir, 0), make_system(body_dir, 1)
    report = import_hmr_state_dict(target, {"state_dict": source.state_dict()})
    assert report.fmt == "suite" and report.clean
    assert_same_outputs(source, target)
    assert detect_format(["conv1.weight", "layer1.0.bn1.weight", "decpose.bias"]) == "spin"
    assert detect_format(["backbone.conv1.weight", "head.fc1.weight"]) == "mmhuman3d"
    with pytest.raises(CheckpointImportError, match="cannot tell"):
        detect_format(["encoder.blocks.0.weight"])
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        import_hmr_state_dict(target, "/nonexistent/nowhere.pth")


def test_init_checkpoint_is_applied_at_fit_setup_only(body_dir: str, tmp_path) -> None:
    source = make_system(body_dir, 0)
    path = tmp_path / "spin_init.pt"
    torch.save(to_spin(source.state_dict()), path)
    system = make_system(body_dir, 1, init_checkpoint=str(path), init_format="spin")
    system.setup("test")  # evaluation never loads the fine-tuning start point
    assert not torch.equal(outputs(system)[0], outputs(source)[0])
    system.setup("fit")
    assert system.init_report is not None and system.init_report.clean
    assert_same_outputs(source, system)


class _Payload:
    """What a crafted checkpoint carries: unpickling it would call ``touch`` on a marker file."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_python_objects_gives_its_weights_and_runs_nothing(tmp_path) -> None:
    import argparse

    from gtahuman.systems.checkpoint_import import read_state_dict
    from gtahuman.systems.safe_checkpoint import StandIn, load_untrusted

    marker = tmp_path / "payload-ran"
    weights = {"fc1.weight": torch.arange(6.0).reshape(2, 3)}
    torch.save({"state_dict": weights, "hyper_parameters": argparse.Namespace(lr=1e-4),
                "extra": _Payload(marker)}, tmp_path / "third_party.ckpt")
    with pytest.raises(Exception):  # torch's own safe mode refuses the file outright
        torch.load(tmp_path / "third_party.ckpt", weights_only=True)
    loaded = load_untrusted(tmp_path / "third_party.ckpt")
    assert not marker.exists()  # the payload's callable became a stand-in and was never called
    assert isinstance(loaded["extra"], StandIn) and "system" in repr(loaded["extra"])
    assert isinstance(loaded["hyper_parameters"], StandIn) and loaded["hyper_parameters"].state == {"lr": 1e-4}
    state, _, _ = read_state_dict(tmp_path / "third_party.ckpt")
    torch.testing.assert_close(state["fc1.weight"], weights["fc1.weight"])
    assert not marker.exists()
    # control: plain torch.load without the safe mode does run it (so the test can fail)
    torch.load(tmp_path / "third_party.ckpt", weights_only=False)
    assert marker.exists()
