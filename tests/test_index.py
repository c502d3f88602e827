"""The sample index: schema, validation, concat/subset, and the atomic, checksummed disk format."""
import pickle

import numpy as np
import pytest

import gtahuman.data.index_files as index_files
from gtahuman.data.index import (
    COLUMNS,
    IndexMismatchError,
    IndexValidationError,
    SampleIndex,
    encode_categorical,
)
from gtahuman.data.index_synthetic import synthesize_index


@pytest.fixture
def index() -> SampleIndex:
    return synthesize_index(120, np.random.default_rng(0))


def minimal(paths, weather=(), vocab=(), dataset="d", domain="real") -> SampleIndex:
    n = len(paths)
    codes, vocabulary = encode_categorical(list(weather) or [None] * n, vocab)
    return SampleIndex(
        {"image_path": paths, "image_size": np.tile([640, 480], (n, 1)), "bbox_xywh": np.tile([10.0, 10, 100, 200], (n, 1)),
         "weather": codes},
        {"dataset": dataset, "domain": domain, "vocabularies": {"weather": vocabulary}},
    )


def assert_same(a: SampleIndex, b: SampleIndex) -> None:
    assert len(a) == len(b)
    for name in COLUMNS:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


# -- schema ------------------------------------------------------------------------------------
def test_every_column_present_with_schema_dtype_and_fill(index):
    small = minimal(["a.jpg", "b/c.jpg"])
    for name, spec in COLUMNS.items():
        assert small[name].shape == (2, *spec.shape)
        assert spec.dtype == "S" or small[name].dtype == np.dtype(spec.dtype)
    assert small["image_path"].dtype.kind == "S" and index["image_path"].dtype.kind == "S"  # never object
    assert np.isnan(small["cam_elevation"]).all() and (small["gender"] == -1).all() and not small["has_smpl"].any()
    assert small.image_path(1) == "b/c.jpg"


def test_schema_errors_name_the_column():
    with pytest.raises(KeyError, match="bbox_xywh"):
        SampleIndex({"image_path": ["a"], "image_size": [[1, 1]]}, {"dataset": "d", "domain": "real"})
    good = {"image_path": ["a"], "image_size": [[9, 9]], "bbox_xywh": [[0.0, 0, 1, 1]]}
    with pytest.raises(KeyError, match="unknown index column 'smpl_beta'"):
        SampleIndex({**good, "smpl_beta": np.zeros((1, 10))}, {"dataset": "d", "domain": "real"})
    with pytest.raises(ValueError, match=r"'smpl_betas'.*\(N, 10\)"):
        SampleIndex({**good, "smpl_betas": np.zeros((1, 16))}, {"dataset": "d", "domain": "real"})
    with pytest.raises(TypeError, match="'gender'"):
        SampleIndex({**good, "gender": [0.5]}, {"dataset": "d", "domain": "real"})
    with pytest.raises(ValueError, match="'frame_id' has 2 rows"):
        SampleIndex({**good, "frame_id": [0, 1]}, {"dataset": "d", "domain": "real"})
    with pytest.raises(KeyError, match="domain"):
        SampleIndex(good, {"dataset": "d"})
    with pytest.raises(TypeError, match="JSON"):
        SampleIndex(good, {"dataset": "d", "domain": "real", "made_by": object()})


# -- validation --------------------------------------------------------------------------------
def test_validate_names_column_and_first_bad_row(index):
    index.validate()
    betas = index["smpl_betas"]
    has_smpl = index["has_smpl"]
    unannotated = np.flatnonzero(~has_smpl)[0]
    betas[unannotated, 0] = np.nan  # not annotated there: allowed
    index.validate()
    bad = np.flatnonzero(has_smpl)[3:5]
    betas[bad, 2] = np.nan
    with pytest.raises(IndexValidationError) as err:
        index.validate(chunk_rows=16)  # the first bad row is found across chunk boundaries
    expected = f"column 'smpl_betas': must be finite where has_smpl is true: first at row {bad[0]} (2 rows in all)"
    assert expected in str(err.value)


def test_validate_box_outside_image_and_bad_codes(index):
    index["bbox_xywh"][7] = [1900, 10, 50, 50]  # x + w = 1950 > 1920
    index["weather"][9] = 3  # vocabulary has 3 labels
    with pytest.raises(IndexValidationError) as err:
        index.validate()
    problems = err.value.problems
    assert len(problems) == 2
    assert "column 'bbox_xywh': must lie inside image_size" in problems[0] and "first at row 7" in problems[0]
    assert "column 'weather'" in problems[1] and "first at row 9" in problems[1]


# -- derived indices ---------------------------------------------------------------------------
def test_concat_merges_vocabularies_and_recodes():
    a = minimal(["a0", "a1", "a2"], ["clear", "rain", None])
    b = minimal(["b0-longer-path", "b1"], ["snow", "clear"], vocab=["snow", "clear", "fog"])
    both = SampleIndex.concat([a, b])
    assert both.meta["vocabularies"]["weather"] == ["clear", "rain", "snow", "fog"]
    labels = [both.row(i)["weather"] for i in range(len(both))]
    assert labels == ["clear", "rain", None, "snow", "clear"]
    assert [both.image_path(i) for i in range(5)] == ["a0", "a1", "a2", "b0-longer-path", "b1"]
    both.validate()
    with pytest.raises(ValueError, match="different dataset"):
        SampleIndex.concat([a, minimal(["c"], dataset="other")])
    mixed = SampleIndex.concat([a, minimal(["c"], dataset="other")], meta={"dataset": "mix", "domain": "real"})
    assert len(mixed) == 4


def test_subset_by_rows_and_mask(index):
    rows = np.array([5, 2, 9])
    part = index.subset(rows)
    assert [part.image_path(i) for i in range(3)] == [index.image_path(r) for r in rows]
    np.testing.assert_array_equal(part["smpl_body_pose"], index["smpl_body_pose"][rows])
    mask = index["has_smpl"]
    assert len(index.subset(mask)) == mask.sum()
    assert part.meta["vocabularies"] == index.meta["vocabularies"]


# -- disk --------------------------------------------------------------------------------------
def test_save_load_round_trip_memory_mapped(index, tmp_path):
    index.save(tmp_path / "idx")
    loaded = SampleIndex.load(tmp_path / "idx", mmap=True, verify="full")
    assert_same(index, loaded)
    assert isinstance(loaded["keypoints2d"], np.memmap) and not loaded["keypoints2d"].flags.writeable
    assert loaded.meta == index.meta
    in_memory = SampleIndex.load(tmp_path / "idx", mmap=False)
    assert not isinstance(in_memory["keypoints2d"], np.memmap)
    # an index saved over itself while mapped: the old maps stay readable, the new files are read back
    index["frame_id"][:] = 7
    index.save(tmp_path / "idx")
    assert (SampleIndex.load(tmp_path / "idx")["frame_id"] == 7).all()
    assert loaded["frame_id"][1] == 1


def test_tampered_column_file_is_named(index, tmp_path):
    index.save(tmp_path / "idx")
    column_file = tmp_path / "idx" / "smpl_betas.npy"
    data = bytearray(column_file.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    column_file.write_bytes(bytes(data))
    SampleIndex.load(tmp_path / "idx", verify="fast")  # sizes agree
    with pytest.raises(IndexMismatchError, match=r"index does not match the files it came from: .*smpl_betas\.npy: sha256"):
        SampleIndex.load(tmp_path / "idx", verify="full")
    column_file.write_bytes(bytes(data) + b"\0" * 8)
    with pytest.raises(IndexMismatchError, match=r"smpl_betas\.npy: .* bytes, manifest says"):
        SampleIndex.load(tmp_path / "idx", verify="fast")
    manifest = tmp_path / "idx" / "manifest.json"
    text = manifest.read_text()
    manifest.write_text(text.replace('"daytime_hours"', '"daytime_hourz"'))
    with pytest.raises(IndexMismatchError, match=r"missing \['daytime_hours'\], unknown \['daytime_hourz'\]"):
        SampleIndex.load(tmp_path / "idx", verify=False)
    manifest.write_text(text)
    (tmp_path / "idx" / "truncation.npy").unlink()
    with pytest.raises(IndexMismatchError, match=r"truncation\.npy: file of column 'truncation' is missing"):
        SampleIndex.load(tmp_path / "idx", verify=False)


def test_interrupted_save_keeps_old_index(index, tmp_path, monkeypatch):
    target = tmp_path / "idx"
    index.save(target)
    written = []

    def crash_on_fifth(path, array):
        if len(written) == 4:
            raise KeyboardInterrupt("simulated crash mid-save")
        written.append(path.name)
        return real_write(path, array)

    real_write = index_files._write_column
    monkeypatch.setattr(index_files, "_write_column", crash_on_fifth)
    changed = index.subset(np.arange(10))
    with pytest.raises(KeyboardInterrupt):
        changed.save(target)
    assert_same(SampleIndex.load(target, verify="full"), index)  # the old one, complete
    written.clear()
    with pytest.raises(KeyboardInterrupt):
        changed.save(tmp_path / "fresh")
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        SampleIndex.load(tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]  # no half-written leftovers


def test_save_refuses_to_replace_a_directory_that_is_not_an_index(index, tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "keep.jpg").write_bytes(b"x")
    with pytest.raises(FileExistsError, match="not a sample index"):
        index.save(tmp_path / "photos")
    assert (tmp_path / "photos" / "keep.jpg").exists()


def test_pickled_mapped_index_travels_as_its_directory(index, tmp_path):
    index.save(tmp_path / "idx")
    loaded = SampleIndex.load(tmp_path / "idx")
    blob = pickle.dumps(loaded)
    assert len(blob) < 2000  # a DataLoader worker re-maps the files instead of receiving a copy
    assert_same(pickle.loads(blob), index)
    copied = pickle.loads(pickle.dumps(index))  # in-memory indices carry their data
    assert_same(copied, index)
    assert copied.meta == index.meta
    index.subset([0, 1]).save(tmp_path / "idx")
    with pytest.raises(IndexMismatchError, match="rewritten"):
        pickle.loads(blob)


def test_empty_index_round_trip(tmp_path):
    empty = minimal([])
    empty.save(tmp_path / "e")
    assert len(SampleIndex.load(tmp_path / "e")) == 0
