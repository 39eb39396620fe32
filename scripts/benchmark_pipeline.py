"""Training throughput of the course pipeline against the common textbook pipeline.

    python scripts/benchmark_pipeline.py [--model alexnet] [--size 67] [--images 4096]

Both train the same model (the reference AlexNet(1, 10) of the assignment master, freshly
seeded) for two epochs over the same FashionMNIST images; the faster epoch counts.
- course: cnn_course.fit, the split resident on the device as uint8, normalised, flipped
  and upscaled per batch on the device (channels_last + bf16 autocast on CUDA);
- textbook: torchvision transforms (Resize per sample, flip, ToTensor, Normalize) in a
  DataLoader with worker processes, float32.
Prints both figures in images/s and their ratio. Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset
from torchvision import transforms

from cnn_course import Recipe, describe_run, fit, get_profile, pick_device, seed_everything
from cnn_course.data import MEAN, STD, balanced_indices, load_split, torchvision_datasets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cnn_grader.hidden_checks.reference import load_reference  # noqa: E402


def textbook_images_per_second(model: torch.nn.Module, dataset, batch: int, workers: int,
                               lr: float, device: torch.device, epochs: int = 2) -> float:
    """Images/s of the fastest epoch of a plain DataLoader + float32 training loop."""
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True)
    best = 0.0
    for _ in range(epochs):
        start, seen = time.perf_counter(), 0
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = max(best, seen / (time.perf_counter() - start))
    return best


def main() -> None:
    profile = get_profile()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("alexnet", "vgg16"), default="alexnet")
    parser.add_argument("--size", type=int, help="input side (default: the profile's)")
    parser.add_argument("--images", type=int, default=4096, help="training images per epoch")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (textbook)")
    args = parser.parse_args()
    size = args.size or profile.image_size(args.model)
    device = pick_device()
    model_class = load_reference()[args.model]
    print(describe_run(profile, device))
    print(f"model {model_class.__name__}(1, 10) at {size}x{size}, {args.images} images, "
          f"batch {args.batch}")

    images, labels = load_split(True, profile)
    keep = torch.from_numpy(balanced_indices(labels, min(args.images, len(labels))))
    train = (images[keep], labels[keep])
    test = (images[:256], labels[:256])  # evaluated after each epoch, not timed
    recipe = Recipe(epochs=2, batch_size=args.batch, lr=0.01, optimizer="sgd", flip=True,
                    image_size=size)
    seed_everything(0)
    course = fit(model_class(1, 10), train, test, recipe, device).images_per_second

    pipeline = transforms.Compose([transforms.Resize(size), transforms.RandomHorizontalFlip(),
                                   transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    full_train, _ = torchvision_datasets(profile, transform=pipeline)
    dataset = Subset(full_train, keep.tolist())
    seed_everything(0)
    textbook = textbook_images_per_second(model_class(1, 10), dataset, args.batch,
                                          args.workers, recipe.lr, device)
    print(f"course pipeline:   {course:10,.0f} images/s")
    print(f"textbook pipeline: {textbook:10,.0f} images/s")
    print(f"ratio:             {course / textbook:10.2f}x")


if __name__ == "__main__":
    main()
