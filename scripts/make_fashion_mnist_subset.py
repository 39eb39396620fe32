"""Write the committed FashionMNIST subset (class-balanced) from the full data set.

    python scripts/make_fashion_mnist_subset.py [--train 2000] [--test 500]

Reads the full set through ``cnn_course.data.locate_fashion_mnist`` and writes the
four IDX files into ``cnn_course/fashion_mnist_subset/FashionMNIST/raw/``.
"""
from __future__ import annotations

import argparse

from cnn_course.data import (
    FILES, SUBSET_ROOT, balanced_indices, locate_fashion_mnist, raw_folder, read_idx, write_idx,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=int, default=2000, help="training images (default 2000)")
    parser.add_argument("--test", type=int, default=500, help="test images (default 500)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    source = raw_folder(locate_fashion_mnist())
    target = raw_folder(SUBSET_ROOT)
    target.mkdir(parents=True, exist_ok=True)
    for split, size in (("train", args.train), ("test", args.test)):
        images = read_idx(source / FILES[(split, "images")])
        labels = read_idx(source / FILES[(split, "labels")])
        keep = balanced_indices(labels, size, args.seed)
        write_idx(target / FILES[(split, "images")], images[keep])
        write_idx(target / FILES[(split, "labels")], labels[keep])
        print(f"{split}: {size} images, {size // 10} per class -> {target}")


if __name__ == "__main__":
    main()
