"""FashionMNIST: find it, check it, and load it as tensors or torchvision datasets.

Look-up order for the full data set (``locate_fashion_mnist``):

(a) torchvision's layout under the course's data folder: ``<root>/FashionMNIST/raw/``
    holding the four unpacked IDX files;
(b) Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist/*.gz``),
    unpacked into (a);
(c) torchvision's own download into (a).

The ``ci`` profile never looks: it reads the small class-balanced subset that comes
inside this package (``fashion_mnist_subset/``, drawn from the full data set).
"""
from __future__ import annotations

import argparse
import gzip
import os
import shutil
import struct
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset

from .runtime import Profile, get_profile

DATA_ENV = "CNN_COURSE_DATA"
REPO_ROOT = Path(__file__).resolve().parent.parent
SUBSET_ROOT = Path(__file__).resolve().parent / "fashion_mnist_subset"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
MEAN, STD = 0.2860, 0.3530  # of the 60,000 training images, pixel values in [0, 1]

FILES = {  # (split, kind) -> IDX file name, as torchvision expects it
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
_MAGIC = {"images": 0x00000803, "labels": 0x00000801}
_FIX = "delete it and run `make data` (or `python -m cnn_course`) to unpack it again"


class DataNotFoundError(RuntimeError):
    """No source of FashionMNIST worked."""


class CorruptDataError(RuntimeError):
    """A FashionMNIST file exists but cannot be read completely."""


def default_data_root() -> Path:
    """The course's data folder: ``$CNN_COURSE_DATA`` or ``data/`` in the repository."""
    return Path(os.environ.get(DATA_ENV) or REPO_ROOT / "data")


def raw_folder(root: Path) -> Path:
    """Where torchvision keeps the unpacked IDX files below ``root``."""
    return Path(root) / "FashionMNIST" / "raw"


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (uint8 images or labels), checking header and length."""
    path = Path(path)
    kind = "labels" if "labels" in path.name else "images"
    blob = path.read_bytes()
    ndim = 1 if kind == "labels" else 3
    header = 4 + 4 * ndim
    if len(blob) < header or struct.unpack(">I", blob[:4])[0] != _MAGIC[kind]:
        raise CorruptDataError(f"{path} is not an IDX {kind} file (bad header): {_FIX}")
    shape = struct.unpack(f">{ndim}I", blob[4:header])
    expected = header + int(np.prod(shape))
    if len(blob) != expected:
        raise CorruptDataError(
            f"{path} is truncated or corrupt: {len(blob):,} bytes, its header promises "
            f"{expected:,}: {_FIX}"
        )
    return np.frombuffer(blob, dtype=np.uint8, offset=header).reshape(shape)


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array of images (N, H, W) or labels (N,) as an IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    kind = "labels" if array.ndim == 1 else "images"
    header = struct.pack(f">I{array.ndim}I", _MAGIC[kind], *array.shape)
    Path(path).write_bytes(header + array.tobytes())


def _complete_raw_folder(root: Path) -> bool:
    """True when all four IDX files are present and sound; raises on a damaged one."""
    raw = raw_folder(root)
    present = [name for name in FILES.values() if (raw / name).exists()]
    if not present:
        return False
    missing = [name for name in FILES.values() if name not in present]
    if missing:
        raise CorruptDataError(
            f"{raw} is incomplete: {', '.join(missing)} missing; delete the folder and run "
            "`make data` (or `python -m cnn_course`) to prepare it again"
        )
    images, labels = {}, {}
    for (split, kind), name in FILES.items():
        counts = images if kind == "images" else labels
        counts[split] = read_idx(raw / name).shape[0]
    for split in images:
        if images[split] != labels[split]:
            raise CorruptDataError(
                f"{raw}: {images[split]} {split} images but {labels[split]} labels: {_FIX}"
            )
    return True


def _unpack_debian(debian_dir: Path, root: Path) -> bool:
    """Unpack Debian's .gz files into the raw folder; False when the package is absent."""
    sources = {name: debian_dir / f"{name}.gz" for name in FILES.values()}
    if not all(src.exists() for src in sources.values()):
        return False
    raw = raw_folder(root)
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        partial = raw / f"{name}.partial"
        try:
            with gzip.open(src, "rb") as packed, open(partial, "wb") as out:
                shutil.copyfileobj(packed, out)
        except (OSError, EOFError, zlib.error) as err:
            partial.unlink(missing_ok=True)
            raise CorruptDataError(
                f"{src} cannot be unpacked ({err}): reinstall it with "
                "`sudo apt-get install --reinstall dataset-fashion-mnist`"
            ) from err
        partial.replace(raw / name)
    return True


def _download_with_torchvision(root: Path) -> None:
    """torchvision's own download (needs the internet)."""
    from torchvision.datasets import FashionMNIST

    for train in (True, False):
        FashionMNIST(str(root), train=train, download=True)


def _not_found_message(root: Path, debian_dir: Path, reason: str) -> str:
    gz = ", ".join(f"{name}.gz" for name in FILES.values())
    return (
        "FashionMNIST was not found. Any one of these provides it:\n"
        f"  1. put the four unpacked IDX files ({', '.join(FILES.values())}) in "
        f"{raw_folder(root)}\n"
        f"  2. copy the four .gz files ({gz}) into a folder FOLDER and run "
        f"`.venv/bin/python -m cnn_course --gz-dir FOLDER` in the course folder: it unpacks "
        "them into the folder of 1.\n"
        f"  3. install Debian's package: `sudo apt-get install dataset-fashion-mnist` "
        f"(files appear in {debian_dir}), then run `make data`\n"
        "  4. connect to the internet and run `make data`, which lets torchvision download "
        f"it (here the download failed: {reason})\n"
        "Or choose the `ci` profile, which reads the small subset shipped in cnn_course "
        f"({SUBSET_ROOT}; lower accuracies): start JupyterLab with `make lab PROFILE=ci`, "
        "or set CNN_COURSE_PROFILE=ci before you start Python or Jupyter."
    )


def locate_fashion_mnist(root: Path | None = None, debian_dir: Path = DEBIAN_DIR) -> Path:
    """Return a root folder holding the full FashionMNIST in torchvision's layout.

    Tries (a) the data folder, (b) Debian's package, (c) torchvision's download, and
    raises ``DataNotFoundError`` naming all the ways to provide it, and the ``ci`` profile
    as the alternative, when none works. A damaged file raises ``CorruptDataError``;
    nothing falls back silently to other data.
    """
    root = Path(root) if root is not None else default_data_root()
    if _complete_raw_folder(root):
        return root
    if _unpack_debian(Path(debian_dir), root) and _complete_raw_folder(root):
        return root
    try:
        _download_with_torchvision(root)
    except Exception as err:  # urllib, socket and torchvision errors alike
        raise DataNotFoundError(_not_found_message(root, Path(debian_dir), str(err))) from None
    if not _complete_raw_folder(root):
        raise DataNotFoundError(
            _not_found_message(root, Path(debian_dir), "no files after the download")
        )
    return root


def dataset_root(profile: Profile | None = None) -> Path:
    """The root to read for ``profile``: the committed subset for ``ci``, else the full set."""
    profile = profile or get_profile()
    return SUBSET_ROOT if profile.subset else locate_fashion_mnist()


def balanced_indices(labels: np.ndarray | torch.Tensor, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with (as near as possible) the same number of each class, sorted."""
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if n > len(labels):
        raise ValueError(f"asked for {n} samples from a split of {len(labels)}")
    rng = np.random.default_rng(seed)
    per_class = [n // len(classes) + (i < n % len(classes)) for i in range(len(classes))]
    picks = [
        rng.choice(np.flatnonzero(labels == c), size=k, replace=False)
        for c, k in zip(classes, per_class)
    ]
    return np.sort(np.concatenate(picks))


def validation_split(
    labels: np.ndarray | torch.Tensor, fraction: float = 0.1, seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Split the indices of a training set into ``(train, validation)``, class by class.

    Each class gives ``fraction`` of its images (rounded to the nearest whole image), drawn
    at random with ``seed``, to the validation set; the rest stay for training. The two
    sorted index arrays are disjoint and cover ``0 .. len(labels) - 1``; the same labels,
    fraction and seed always give the same split. Choose settings (learning rate, epochs,
    architecture) on the validation set and touch the test set once, at the end.
    """
    labels = np.asarray(labels)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie strictly between 0 and 1, not {fraction}")
    rng = np.random.default_rng(seed)
    held_out = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        held_out.append(rng.permutation(members)[:int(np.floor(fraction * len(members) + 0.5))])
    val = np.sort(np.concatenate(held_out))
    train = np.setdiff1d(np.arange(len(labels)), val, assume_unique=True)
    return train, val


def split_validation(
    split: tuple[torch.Tensor, torch.Tensor], fraction: float = 0.1, seed: int = 0,
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``(train, validation)`` tensor splits of a training split (:func:`validation_split`)."""
    images, labels = split
    train, val = (torch.from_numpy(idx) for idx in validation_split(labels, fraction, seed))
    return (images[train], labels[train]), (images[val], labels[val])


def load_splits(
    profile: Profile | None = None, val_fraction: float = 0.1, seed: int = 0,
) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
    """``(train, validation, test)`` of the profile: the validation set comes out of training."""
    train, val = split_validation(load_split(True, profile), val_fraction, seed)
    return train, val, load_split(False, profile)


def load_split(train: bool, profile: Profile | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One split as ``(images uint8 [N, 28, 28], labels int64 [N])``, limited by the profile."""
    profile = profile or get_profile()
    split = "train" if train else "test"
    raw = raw_folder(dataset_root(profile))
    images = read_idx(raw / FILES[(split, "images")])
    labels = read_idx(raw / FILES[(split, "labels")])
    limit = profile.train_size if train else profile.test_size
    if limit is not None and limit < len(labels):
        keep = balanced_indices(labels, limit)
        images, labels = images[keep], labels[keep]
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def torchvision_datasets(
    profile: Profile | None = None, transform: Callable[[Any], Any] | None = None,
) -> tuple[Dataset, Dataset]:
    """``(train, test)`` as torchvision datasets (``Subset`` where the profile limits them)."""
    from torchvision.datasets import FashionMNIST

    profile = profile or get_profile()
    root = str(dataset_root(profile))
    out: list[Dataset] = []
    for train, limit in ((True, profile.train_size), (False, profile.test_size)):
        ds = FashionMNIST(root, train=train, download=False, transform=transform)
        if limit is not None and limit < len(ds):
            ds = Subset(ds, balanced_indices(ds.targets, limit).tolist())
        out.append(ds)
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    """Prepare the full FashionMNIST in the data folder and report what was found."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--best-effort", action="store_true",
                        help="report a missing data set but exit 0 (tests use the subset)")
    parser.add_argument("--gz-dir", type=Path, default=DEBIAN_DIR,
                        help="folder holding the four .gz files, as Debian's package lays "
                             f"them out (default: {DEBIAN_DIR})")
    args = parser.parse_args(argv)
    try:
        root = locate_fashion_mnist(debian_dir=args.gz_dir)
    except (DataNotFoundError, CorruptDataError) as err:
        print(err)
        return 0 if args.best_effort else 1
    raw = raw_folder(root)
    train = read_idx(raw / FILES[("train", "labels")]).shape[0]
    test = read_idx(raw / FILES[("test", "labels")]).shape[0]
    print(f"FashionMNIST ready in {raw}: {train:,} train / {test:,} test images")
    return 0

