"""SMPL model files without chumpy, and the body-model directory check."""
from __future__ import annotations

import pickle
import pickletools
import shutil
import sys
import types

import numpy as np
import pytest
import scipy.sparse

from gtahuman.body import assets as assets_module
from gtahuman.body.assets import BodyAssetError, check_body_model_dir
from gtahuman.body.model_files import (ModelFileError, convert_model_file, load_smpl_model_file,
                                       read_npy_header, write_chumpy_style_pkl, write_marked_npy,
                                       write_smpl_npz)

N = 6890


def fake_smpl_arrays(seed: int = 0) -> dict:
    """Arrays with SMPL's keys and shapes (random values; only the format matters here)."""
    rng = np.random.default_rng(seed)
    regressor = np.zeros((24, N))
    for j in range(24):  # each joint averages 6 random vertices, as a sparse regressor would
        regressor[j, rng.choice(N, 6, replace=False)] = 1.0 / 6
    posedirs = np.zeros((N, 3, 207))  # mostly zero keeps the files small and fast to write
    posedirs[rng.choice(N, 40, replace=False)] = rng.normal(size=(40, 3, 207)) * 0.001
    return {
        "v_template": rng.normal(size=(N, 3)),
        "shapedirs": rng.normal(size=(N, 3, 10)) * 0.01,
        "posedirs": posedirs,
        "J_regressor": regressor,
        "weights": rng.dirichlet(np.ones(24), size=N),
        "f": rng.integers(0, N, size=(50, 3)).astype(np.uint32),
        "kintree_table": np.array([[4294967295, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13,
                                    14, 16, 17, 18, 19, 20, 21], list(range(24))], dtype=np.int64),
        "J": rng.normal(size=(24, 3)),
        "bs_style": "lbs",
    }


def pickle_globals(raw: bytes) -> set[str]:
    return {str(arg) for op, arg, _ in pickletools.genops(raw) if op.name == "GLOBAL"}


def test_chumpy_style_pickle_loads_equal_to_npz(tmp_path):
    arrays = fake_smpl_arrays()
    pkl = write_chumpy_style_pkl(tmp_path / "SMPL_NEUTRAL.pkl", arrays)
    npz = write_smpl_npz(tmp_path / "SMPL_NEUTRAL.npz", arrays)
    names = pickle_globals(pkl.read_bytes())
    assert "chumpy.ch Ch" in names  # really carries chumpy objects ...
    assert any(n.startswith("scipy.sparse") and "csc_matrix" in n for n in names)  # ... and csc
    from_pkl, from_npz = load_smpl_model_file(pkl), load_smpl_model_file(npz)
    assert "chumpy" not in sys.modules
    assert set(from_pkl) == set(from_npz) == set(arrays)
    for key, value in arrays.items():
        if isinstance(value, str):
            assert from_pkl[key] == from_npz[key] == value
        else:
            np.testing.assert_array_equal(from_pkl[key], value)
            np.testing.assert_array_equal(from_npz[key], value)
    assert from_pkl["f"].dtype == np.int64 and from_pkl["v_template"].dtype == np.float64
    assert from_pkl["kintree_table"][0, 0] == 4294967295


def test_loads_a_pickle_made_with_a_chumpy_lookalike_class(tmp_path, monkeypatch):
    """A pickle written by a foreign 'chumpy.ch.Ch' (state = its __dict__ minus caches, the
    value under 'x', as chumpy itself pickles) loads without chumpy."""

    class Ch:
        def __init__(self, x):
            self.x, self._dirty_vars, self._itr = np.asarray(x, float), set(), None
            self._parents, self._cache = {}, {"r": None}

        def __getstate__(self):
            state = dict(self.__dict__)
            del state["_parents"], state["_cache"]
            return state

    module = types.ModuleType("chumpy.ch")
    Ch.__module__, Ch.__qualname__, module.Ch = "chumpy.ch", "Ch", Ch
    monkeypatch.setitem(sys.modules, "chumpy", types.ModuleType("chumpy"))
    monkeypatch.setitem(sys.modules, "chumpy.ch", module)
    arrays = fake_smpl_arrays(1)
    payload = {k: (Ch(v) if k in ("v_template", "shapedirs") else v) for k, v in arrays.items()}
    payload["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    path = tmp_path / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=2))
    monkeypatch.delitem(sys.modules, "chumpy.ch")
    monkeypatch.delitem(sys.modules, "chumpy")

    loaded = load_smpl_model_file(path)
    np.testing.assert_array_equal(loaded["v_template"], arrays["v_template"])
    np.testing.assert_array_equal(loaded["shapedirs"], arrays["shapedirs"])
    np.testing.assert_array_equal(loaded["J_regressor"], arrays["J_regressor"])


@pytest.mark.parametrize("writer", [write_chumpy_style_pkl, write_smpl_npz])
def test_missing_key_is_named_with_the_file(tmp_path, writer):
    arrays = fake_smpl_arrays()
    del arrays["weights"]
    path = writer(tmp_path / ("model.pkl" if writer is write_chumpy_style_pkl else "model.npz"),
                  arrays)
    with pytest.raises(ModelFileError) as info:
        load_smpl_model_file(path)
    assert "weights" in str(info.value) and path.name in str(info.value)


@pytest.mark.parametrize("key,bad_shape", [("posedirs", (N, 3, 200)), ("J_regressor", (24, 6000)),
                                           ("v_template", (N, 2)), ("kintree_table", (2, 23))])
def test_wrong_shape_is_named_with_file_and_key(tmp_path, key, bad_shape):
    arrays = fake_smpl_arrays()
    arrays[key] = np.zeros(bad_shape)
    path = write_chumpy_style_pkl(tmp_path / "SMPL_MALE.pkl", arrays)
    with pytest.raises(ModelFileError) as info:
        load_smpl_model_file(path)
    message = str(info.value)
    assert f"'{key}'" in message and "SMPL_MALE.pkl" in message and str(bad_shape) in message


def test_refuses_foreign_classes_in_a_pickle(tmp_path):
    path = tmp_path / "evil.pkl"
    # a pickle that would call os.getcwd() when loaded by a plain unpickler
    path.write_bytes(b"\x80\x02cos\ngetcwd\n)R.")
    with pytest.raises(ModelFileError, match="os.getcwd"):
        load_smpl_model_file(path)
    # numpy is no wildcard: its testing helpers exec strings (runstring), a crafted file could call them
    marker = tmp_path / "ran"
    source = f"open({str(marker)!r}, 'w').close()".encode()
    path.write_bytes(b"\x80\x02cnumpy.testing._private.utils\nrunstring\nX" + len(source).to_bytes(4, "little")
                     + source + b"}\x86R.")
    with pytest.raises(ModelFileError, match="runstring"):
        load_smpl_model_file(path)
    assert not marker.exists()


def test_convert_pickle_to_npz_without_pickles_inside(tmp_path):
    arrays = fake_smpl_arrays(2)
    src = write_chumpy_style_pkl(tmp_path / "SMPL_FEMALE.pkl", arrays)
    dst = convert_model_file(src, tmp_path / "SMPL_FEMALE.npz")
    with np.load(dst, allow_pickle=False) as npz:  # readable with pickles disabled
        np.testing.assert_array_equal(npz["J_regressor"], arrays["J_regressor"])
        np.testing.assert_array_equal(npz["posedirs"], arrays["posedirs"])
    again = write_smpl_npz(tmp_path / "again.npz", load_smpl_model_file(src))
    assert again.read_bytes() == dst.read_bytes()  # reproducible bytes


def test_marked_npy_loads_like_a_plain_npy(tmp_path):
    array = np.arange(17 * 5, dtype=np.float64).reshape(17, 5)
    path = write_marked_npy(tmp_path / "r.npy", array, "gtahuman_toy_model: test")
    np.testing.assert_array_equal(np.load(path), array)
    np.testing.assert_array_equal(np.load(path, mmap_mode="r"), array)
    assert "gtahuman_toy_model: test" in read_npy_header(path)
    assert (len(read_npy_header(path)) + 10) % 64 == 0  # npy alignment kept


class _FailsMidWrite(np.ndarray):
    def tobytes(self, *args, **kwargs):  # the header is written, then the process "dies"
        raise KeyboardInterrupt


def test_marked_npy_interrupted_mid_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_marked_npy(tmp_path / "r.npy", np.ones(4), "first")
    monkeypatch.setattr(np, "ascontiguousarray", lambda a: a)  # keep the failing subclass
    with pytest.raises(KeyboardInterrupt):
        write_marked_npy(path, np.zeros(4).view(_FailsMidWrite), "second")
    np.testing.assert_array_equal(np.load(path), np.ones(4))
    assert "first" in read_npy_header(path) and list(tmp_path.iterdir()) == [path]  # no temporary left


# --- the body-model directory ---------------------------------------------------------------
@pytest.fixture(scope="module")
def toy_dir(toy_body_dir):
    return toy_body_dir


def test_complete_toy_dir_passes_and_says_toy(toy_dir):
    found = check_body_model_dir(toy_dir)
    assert found.is_toy and "NOT SMPL" in found.toy_description
    assert found.model_files["male"].name == "SMPL_MALE.npz"
    assert assets_module.main([str(toy_dir)]) == 0


def test_missing_files_are_all_listed(tmp_path, toy_dir):
    shutil.copy(toy_dir / "SMPL_MALE.npz", tmp_path / "SMPL_MALE.npz")
    with pytest.raises(BodyAssetError) as info:
        check_body_model_dir(tmp_path)
    message = str(info.value)
    for name in ("SMPL_NEUTRAL", "SMPL_FEMALE", "J_regressor_h36m.npy", "J_regressor_extra.npy",
                 "smpl_mean_params.npz"):
        assert "missing" in message and name in message
    assert "missing male" not in message
    assert "Expected:" in message and "J_regressor_extra.npy" in message.split("Expected:")[1]
    assert assets_module.main([str(tmp_path)]) == 1


def test_bad_files_are_named(tmp_path, toy_dir):
    for item in toy_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    np.save(tmp_path / "J_regressor_h36m.npy", np.zeros((14, N)))
    np.savez(tmp_path / "smpl_mean_params.npz", pose=np.zeros(144), shape=np.zeros(10))
    (tmp_path / "SMPL_FEMALE.npz").write_bytes(b"not a zip")
    with pytest.raises(BodyAssetError) as info:
        check_body_model_dir(tmp_path)
    message = str(info.value)
    assert "J_regressor_h36m.npy: shape (14, 6890), expected (17, 6890)" in message
    assert "smpl_mean_params.npz: missing key 'cam'" in message
    assert "SMPL_FEMALE.npz" in message


def test_smpl_subfolder_and_download_names(tmp_path, toy_dir):
    (tmp_path / "smpl").mkdir()
    for gender, name in (("NEUTRAL", "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"),
                         ("MALE", "basicmodel_m_lbs_10_207_0_v1.0.0.pkl"),
                         ("FEMALE", "basicModel_f_lbs_10_207_0_v1.0.0.pkl")):
        write_chumpy_style_pkl(tmp_path / "smpl" / name,
                               load_smpl_model_file(toy_dir / f"SMPL_{gender}.npz"))
    for name in ("J_regressor_h36m.npy", "J_regressor_extra.npy", "smpl_mean_params.npz"):
        shutil.copy(toy_dir / name, tmp_path / name)
    found = check_body_model_dir(tmp_path)
    expected = tmp_path / "smpl" / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"
    assert found.model_files["neutral"] == expected
    assert found.is_toy


def test_toy_and_real_files_do_not_mix(tmp_path, toy_dir):
    for item in toy_dir.iterdir():
        shutil.copy(item, tmp_path / item.name)
    unmarked = np.load(toy_dir / "J_regressor_extra.npy")
    np.save(tmp_path / "J_regressor_extra.npy", unmarked)  # plain np.save: no toy mark
    with pytest.raises(BodyAssetError, match="mixes generated toy files"):
        check_body_model_dir(tmp_path)
