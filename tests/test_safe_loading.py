"""Loading data never runs code from data files (issue #20, item 1).

Each attack is a real payload: an object whose ``__reduce__`` makes a plain ``pickle.load`` call
``os.system``, ``subprocess.call``, ``eval`` or ``exec`` to create a marker file. A control shows
that the unrestricted loader does create the marker; the project's readers (the GTA-Human raw
reader, HumanData / SPIN npz, the data check's image listing, a whole ``data.check`` run) must
instead raise ``UnsafePickleError`` naming the file and the refused global, and leave no marker.
Legitimate files (written as the mini world and the HumanData writer write them) load exactly as
the unrestricted loaders load them.
"""
from __future__ import annotations

import builtins
import collections
import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gtahuman.data.check import check_source, sample_image_paths
from gtahuman.data.formats.errors import DataFormatError
from gtahuman.data.formats.safe_pickle import read_npz
from gtahuman.data.formats.gta_raw import ANNOTATION_KEYS, GTASequence, read_sequence, write_sequence
from gtahuman.data.formats.humandata import HumanData, dump_humandata, load_humandata
from gtahuman.data.formats.safe_pickle import UnsafePickleError, safe_load_pickle
from gtahuman.data.formats.spin_npz import read_spin_npz

SEQ = "seq_00000007"


class _Payload:
    """Unpickling this calls ``call(*args)``, which creates ``marker``."""

    def __init__(self, call, args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def _payloads(marker: Path) -> dict[str, tuple[_Payload, str]]:
    """name -> (payload that creates ``marker``, the global a pickle of it imports)."""
    write = f"open({str(marker)!r}, 'w').close()"
    return {
        "os.system": (_Payload(os.system, (f"touch '{marker}'",)), f"{os.system.__module__}.system"),
        "subprocess.call": (_Payload(subprocess.call, (["touch", str(marker)],)), "subprocess.call"),
        "eval": (_Payload(builtins.eval, (write,)), "builtins.eval"),
        "exec": (_Payload(builtins.exec, (write,)), "builtins.exec"),
    }


ATTACKS = ("os.system", "subprocess.call", "eval", "exec")


@pytest.fixture(params=ATTACKS)
def attack(request, tmp_path):
    """(payload, refused global, marker path); the control proves the payload really runs."""
    control = tmp_path / "control_marker"
    payload, refused = _payloads(control)[request.param]
    pickle.loads(pickle.dumps({"x": payload}))  # the unrestricted loader runs it
    assert control.exists(), "the payload is not live: this test would prove nothing"
    marker = tmp_path / "MARKER"
    payload, refused = _payloads(marker)[request.param]
    return payload, refused, marker


def _assert_refused(info: pytest.ExceptionInfo, path: Path, refused: str, marker: Path) -> None:
    err = info.value
    assert isinstance(err, DataFormatError) and err.refused == refused
    assert str(path) in str(err) and f"'{refused}'" in str(err) and "never runs code" in str(err)
    assert not marker.exists()


def _object_scalar(value) -> np.ndarray:
    holder = np.empty((), dtype=object)
    holder[()] = value
    return holder


def _sequence(n: int = 3) -> GTASequence:
    """A sequence typed as `miniworld.writers._write_gta` builds it (float32 arrays, bool masks)."""
    rng = np.random.default_rng(7)
    f32 = lambda *shape: rng.normal(size=shape).astype(np.float32)  # noqa: E731
    return GTASequence(
        seq_name=SEQ, keypoints_2d=f32(n, 100, 3), keypoints_3d=f32(n, 100, 4), occ=rng.random((n, 100)) < 0.3,
        self_occ=rng.random((n, 100)) < 0.2, fov=50.0, is_male=False, weather="RAIN", daytime=(6, 5, 4),
        location_tag="beach", betas=f32(n, 10), body_pose=f32(n, 69) * 0.2, global_orient=f32(n, 3),
        transl=f32(n, 3) + np.float32(5), bbox_xywh=np.tile(np.float32([[10, 20, 30, 60]]), (n, 1)), num_frames=n)


def _same(a, b) -> bool:
    """Equal values of equal types all the way down (dtypes included)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        if a.dtype != b.dtype or a.shape != b.shape:
            return False
        if a.dtype == object:
            return all(_same(x, y) for x, y in zip(a.reshape(-1), b.reshape(-1)))
        return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


# ------------------------------------------------------------------------------------ attacks
def test_gta_raw_annotation_pickle_is_refused(tmp_path, attack):
    payload, refused, marker = attack
    path = write_sequence(tmp_path / "gta", SEQ, _sequence())
    annotation = pickle.loads(path.read_bytes())
    annotation["weather"] = payload  # one poisoned value inside an otherwise valid annotation
    path.write_bytes(pickle.dumps(annotation, protocol=4))
    with pytest.raises(UnsafePickleError) as info:
        read_sequence(tmp_path / "gta", SEQ)
    _assert_refused(info, path, refused, marker)


@pytest.mark.parametrize("form", ["npz", "npy"])
def test_gta_raw_numpy_forms_under_pkl_are_refused(tmp_path, attack, form):
    payload, refused, marker = attack
    path = tmp_path / "gta" / "annotations" / f"{SEQ}.pkl"
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        if form == "npz":
            np.savez(f, num_frames=np.array(1), weather=_object_scalar(payload))
        else:
            np.save(f, _object_scalar({"num_frames": 1, "weather": payload}), allow_pickle=True)
    with pytest.raises(UnsafePickleError) as info:
        read_sequence(tmp_path / "gta", SEQ)
    _assert_refused(info, path, refused, marker)


def test_humandata_object_member_is_refused(tmp_path, attack):
    payload, refused, marker = attack
    path = tmp_path / "hd.npz"
    np.savez_compressed(path, __data_len__=np.array(2), bbox_xywh=np.ones((2, 5), np.float32),
                        smpl=_object_scalar({"global_orient": payload}))
    with pytest.raises(UnsafePickleError) as info:
        load_humandata(path)
    _assert_refused(info, path, refused, marker)
    assert info.value.key == "smpl"


def test_spin_npz_object_member_is_refused(tmp_path, attack):
    payload, refused, marker = attack
    path = tmp_path / "spin.npz"
    np.savez(path, imgname=np.array(["a.jpg", "b.jpg"]), center=np.ones((2, 2)), scale=np.ones(2),
             gender=np.array([payload, "m"], dtype=object))
    with pytest.raises(UnsafePickleError) as info:
        read_spin_npz(path)
    _assert_refused(info, path, refused, marker)


def test_data_check_image_listing_is_refused(tmp_path, attack):
    payload, refused, marker = attack
    path = tmp_path / "wild.npz"
    np.savez(path, imgname=np.array(["a.jpg", payload], dtype=object), center=np.ones((2, 2)), scale=np.ones(2))
    with pytest.raises(UnsafePickleError) as info:
        sample_image_paths("spin_npz", path)
    _assert_refused(info, path, refused, marker)


def test_data_check_run_on_a_poisoned_release_reports_it(tmp_path, toy_body_dir):
    marker = tmp_path / "MARKER"
    payload, refused = _payloads(marker)["os.system"]
    root = tmp_path / "gta"
    path = write_sequence(root, SEQ, _sequence(), images=[np.zeros((32, 32, 3), np.uint8)] * 3)
    path.write_bytes(pickle.dumps({**pickle.loads(path.read_bytes()), "betas": payload}))
    report = check_source("gta_raw", root, body_model_dir=toy_body_dir, cache_dir=tmp_path / "cache", progress=False)
    [problem] = report.problems
    assert "UnsafePickleError" in problem and str(path) in problem and f"'{refused}'" in problem
    assert not marker.exists()


def test_refused_globals_are_never_imported(tmp_path):
    """A pickle naming a module that is not loaded must not import it (importing runs code)."""
    module = "gtahuman_safe_loading_probe"
    (tmp_path / f"{module}.py").write_text(f"open({str(tmp_path / 'MARKER')!r}, 'w').close()\nvalue = 1\n")
    stream = pickle.PROTO + b"\x02" + b"c" + f"{module}\nvalue\n".encode() + b"."
    sys.path.insert(0, str(tmp_path))
    try:
        with pytest.raises(UnsafePickleError, match=f"'{module}.value'"):
            safe_load_pickle(io.BytesIO(stream), "probe.pkl")
    finally:
        sys.path.remove(str(tmp_path))
    assert module not in sys.modules and not (tmp_path / "MARKER").exists()


# ---------------------------------------------------------------------------- legitimate files
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_gta_annotation_loads_as_the_unrestricted_loader_loads_it(tmp_path, protocol):
    seq = _sequence()
    path = write_sequence(tmp_path, SEQ, seq)  # the writer the mini world uses (protocol 4)
    if protocol != 4:  # the same dict as older tools may have written it
        path.write_bytes(pickle.dumps(pickle.loads(path.read_bytes()), protocol=protocol))
    trusted = pickle.loads(path.read_bytes(), encoding="latin1")
    assert _same(safe_load_pickle(path), trusted)
    back = read_sequence(tmp_path, SEQ)
    for key in ANNOTATION_KEYS:
        assert _same(np.asarray(getattr(back, key)), np.asarray(getattr(seq, key))), key


def test_plain_containers_and_numpy_scalars_load_identically():
    value = {"od": collections.OrderedDict(a=1), "set": {1, 2}, "frozen": frozenset([3]), "c": 1 + 2j,
             "bytes": b"", "more": b"\x00\xff", "ba": bytearray(b"xy"), "f64": np.float64(2.5), "str": np.str_("s"),
             "bool": np.bool_(True), "struct": np.zeros(2, [("a", "f4"), ("b", "i2")]),
             "fortran": np.asfortranarray(np.arange(6.0).reshape(2, 3)), "obj": np.array([{"k": (1, None)}], object)}
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        data = pickle.dumps(value, protocol=protocol)
        assert _same(safe_load_pickle(io.BytesIO(data), "x.pkl"), pickle.loads(data)), protocol


def test_humandata_with_smpl_and_meta_dicts_loads_as_before(tmp_path):
    rng = np.random.default_rng(3)
    n = 4
    hd = HumanData(
        data_len=n, image_path=np.array([f"images/{SEQ}/{i:08d}.jpeg" for i in range(n)]),
        bbox_xywh=rng.uniform(0, 100, (n, 5)).astype(np.float32), config="gta_human",
        smpl={"global_orient": rng.normal(size=(n, 3)).astype(np.float32),
              "body_pose": rng.normal(size=(n, 23, 3)).astype(np.float32),
              "betas": rng.normal(size=(n, 10)).astype(np.float32), "transl": rng.normal(size=(n, 3)).astype(np.float32)},
        meta={"gender": np.array(["male", "female", "female", "male"])}, extra={"misc": {"fov": 50.0}},
    )
    path = dump_humandata(tmp_path / "gta_human.npz", hd)
    with np.load(path, allow_pickle=True) as npz:  # the old, unrestricted way (trusted file)
        trusted = {key: npz[key] for key in npz.files}
    assert _same(read_npz(path, "HumanData file"), trusted)
    back = load_humandata(path)
    assert back.data_len == n and back.config == "gta_human" and back.extra == {"misc": {"fov": 50.0}}
    for key, value in hd.smpl.items():
        np.testing.assert_array_equal(back.smpl[key], value)
    np.testing.assert_array_equal(back.meta["gender"], hd.meta["gender"])
    np.testing.assert_array_equal(back.image_path, hd.image_path)


def test_broken_npz_is_still_a_data_format_error(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip, but a pickle: " + pickle.dumps(1))
    with pytest.raises(DataFormatError, match="junk.npz"):
        sample_image_paths("spin_npz", tmp_path / "junk.npz")
    with pytest.raises(DataFormatError, match="junk.npz"):
        read_npz(tmp_path / "junk.npz", "SPIN npz")
