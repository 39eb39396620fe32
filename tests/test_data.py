"""FashionMNIST look-up order, its errors, and the committed subset."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from cnn_course import data, runtime
from cnn_course.data import (
    FILES, SUBSET_ROOT, CorruptDataError, DataNotFoundError, balanced_indices,
    locate_fashion_mnist, raw_folder, read_idx, write_idx,
)
from cnn_course.runtime import PROFILES, Profile
from conftest import require


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


def write_fake_set(folder, gz: bool = False) -> None:
    """Four small IDX files (30 train / 20 test) in ``folder``, optionally gzipped."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", 30), ("test", 20)):
        images, labels = fake_split(n, seed=n)
        for kind, array in (("images", images), ("labels", labels)):
            target = folder / FILES[(split, kind)]
            write_idx(target, array)
            if gz:
                target.with_name(target.name + ".gz").write_bytes(gzip.compress(target.read_bytes()))
                target.unlink()


def test_idx_round_trip(tmp_path):
    images, labels = fake_split(7, seed=1)
    write_idx(tmp_path / "x-images", images)
    write_idx(tmp_path / "x-labels", labels)
    assert np.array_equal(read_idx(tmp_path / "x-images"), images)
    assert np.array_equal(read_idx(tmp_path / "x-labels"), labels)


def test_a_data_folder_is_used_first(tmp_path, no_download):
    write_fake_set(raw_folder(tmp_path))
    debian = tmp_path / "debian"
    write_fake_set(debian, gz=True)  # present, but (a) must win
    assert locate_fashion_mnist(tmp_path, debian) == tmp_path
    assert no_download == []
    assert not any(p.name.endswith(".partial") for p in raw_folder(tmp_path).iterdir())


def test_b_debian_package_is_unpacked_into_the_data_folder(tmp_path, no_download):
    debian = tmp_path / "debian"
    write_fake_set(debian, gz=True)
    root = tmp_path / "course-data"
    assert locate_fashion_mnist(root, debian) == root
    assert read_idx(raw_folder(root) / FILES[("train", "images")]).shape == (30, 28, 28)
    assert read_idx(raw_folder(root) / FILES[("test", "labels")]).shape == (20,)
    assert no_download == []


def test_c_torchvision_download_is_the_last_resort(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(data, "_download_with_torchvision",
                        lambda root: calls.append(root) or write_fake_set(raw_folder(root)))
    root = tmp_path / "course-data"
    assert locate_fashion_mnist(root, tmp_path / "no-debian") == root
    assert calls == [root]


def test_every_source_missing_gives_one_clear_error(tmp_path, no_download):
    with pytest.raises(DataNotFoundError) as info:
        locate_fashion_mnist(tmp_path / "course-data", tmp_path / "no-debian")
    message = str(info.value)
    assert str(raw_folder(tmp_path / "course-data")) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "make data" in message and "internet" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert len(no_download) == 1


def test_truncated_file_names_the_file_and_does_not_fall_back(tmp_path, no_download):
    write_fake_set(raw_folder(tmp_path))
    debian = tmp_path / "debian"
    write_fake_set(debian, gz=True)
    broken = raw_folder(tmp_path) / FILES[("train", "images")]
    broken.write_bytes(broken.read_bytes()[:-100])
    with pytest.raises(CorruptDataError, match="train-images-idx3-ubyte is truncated") as info:
        locate_fashion_mnist(tmp_path, debian)
    assert "make data" in str(info.value)
    assert no_download == []


def test_wrong_header_is_reported(tmp_path):
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"<html>not found</html>")
    with pytest.raises(CorruptDataError, match="bad header"):
        read_idx(bad)


def test_incomplete_data_folder_is_an_error(tmp_path, no_download):
    write_fake_set(raw_folder(tmp_path))
    (raw_folder(tmp_path) / FILES[("test", "labels")]).unlink()
    with pytest.raises(CorruptDataError, match="t10k-labels-idx1-ubyte missing"):
        locate_fashion_mnist(tmp_path, tmp_path / "no-debian")


def test_corrupt_debian_archive_names_the_archive(tmp_path, no_download):
    debian = tmp_path / "debian"
    write_fake_set(debian, gz=True)
    archive = debian / (FILES[("test", "images")] + ".gz")
    archive.write_bytes(archive.read_bytes()[:40])
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte.gz cannot be unpacked"):
        locate_fashion_mnist(tmp_path / "course-data", debian)
    assert no_download == []
    assert not list(raw_folder(tmp_path / "course-data").glob("*.partial"))


def test_committed_subset_is_class_balanced():
    raw = raw_folder(SUBSET_ROOT)
    for split, per_class in (("train", 200), ("test", 50)):
        labels = read_idx(raw / FILES[(split, "labels")])
        images = read_idx(raw / FILES[(split, "images")])
        assert np.bincount(labels, minlength=10).tolist() == [per_class] * 10
        assert images.shape == (10 * per_class, 28, 28)
        assert 0.2 < images.mean() / 255 < 0.4  # real clothes, not noise or blanks


def test_subset_is_drawn_from_the_full_set(no_download):
    """Needs the full set: skips where it is absent (fails in CI); a damaged one fails."""
    try:
        full = raw_folder(locate_fashion_mnist())
    except DataNotFoundError as error:  # CorruptDataError is not caught: a failure
        require(f"the full FashionMNIST is not on this machine: {error}")
    full_images = read_idx(full / FILES[("test", "images")])
    keep = balanced_indices(read_idx(full / FILES[("test", "labels")]), 500)
    assert np.array_equal(full_images[keep], read_idx(raw_folder(SUBSET_ROOT) / FILES[("test", "images")]))



def test_full_set_test_fails_on_a_damaged_set_and_skips_only_on_absence(tmp_path, monkeypatch,
                                                                          no_download):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "course-data"))
    monkeypatch.setattr(data, "_unpack_debian", lambda *_args: False)  # no Debian package
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not on this machine"):
        test_subset_is_drawn_from_the_full_set(no_download)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true.*not on this machine"):
        test_subset_is_drawn_from_the_full_set(no_download)
    raw = raw_folder(tmp_path / "course-data")
    write_fake_set(raw)
    damaged = raw / FILES[("test", "images")]
    damaged.write_bytes(damaged.read_bytes()[:-7])
    monkeypatch.delenv("CI")
    with pytest.raises(CorruptDataError, match="t10k-images-idx3-ubyte"):
        test_subset_is_drawn_from_the_full_set(no_download)

def test_profile_limit_keeps_classes_balanced():
    small = Profile("tiny", "test", subset=True, train_size=100, test_size=30)
    images, labels = data.load_split(True, small)
    assert images.dtype == torch.uint8 and images.shape == (100, 28, 28)
    assert torch.bincount(labels).tolist() == [10] * 10
    assert len(data.load_split(False, small)[1]) == 30


def test_torchvision_datasets_read_the_subset_offline(no_download):
    train, test = data.torchvision_datasets(PROFILES["ci"])
    assert (len(train), len(test)) == (2000, 500)
    image, label = test[0]
    assert image.size == (28, 28) and 0 <= label < 10
    assert no_download == []


def test_balanced_indices_rejects_too_many():
    with pytest.raises(ValueError, match="asked for 11"):
        balanced_indices(np.arange(10) % 2, 11)


def test_command_unpacks_gz_files_from_a_given_folder(tmp_path, monkeypatch, capsys,
                                                      no_download):
    gz = tmp_path / "copied-gz"
    write_fake_set(gz, gz=True)
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "course-data"))
    assert data.main(["--gz-dir", str(gz)]) == 0
    assert "30 train / 20 test images" in capsys.readouterr().out
    assert read_idx(raw_folder(tmp_path / "course-data") / FILES[("test", "images")]).shape == (20, 28, 28)


def test_offline_without_the_full_set_the_error_says_what_to_do(tmp_path, monkeypatch,
                                                                no_download):
    monkeypatch.setenv(data.DATA_ENV, str(tmp_path / "course-data"))
    monkeypatch.setattr(data, "_unpack_debian", lambda *_args: False)  # no Debian package
    with pytest.raises(DataNotFoundError) as info:  # no silent fall-back to the subset
        data.load_split(True, PROFILES["cpu"])
    message = str(info.value)
    assert f"in {raw_folder(tmp_path / 'course-data')}" in message
    assert all(f"{name}.gz" in message for name in FILES.values())
    assert "`.venv/bin/python -m cnn_course --gz-dir FOLDER`" in message
    assert "apt-get install dataset-fashion-mnist" in message and "internet" in message
    assert "`make lab PROFILE=ci`" in message and "CNN_COURSE_PROFILE=ci" in message
    assert str(SUBSET_ROOT) in message
    assert len(no_download) == 1
    # The choice the message offers works offline: the ci profile reads the subset.
    monkeypatch.setenv(runtime.PROFILE_ENV, "ci")
    assert data.load_split(True)[1].shape == (2000,)
    assert len(no_download) == 1
