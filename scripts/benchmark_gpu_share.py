"""How many grading trainings share one GPU well: 1, 2, 4 ... at once, each its own process.

    python scripts/benchmark_gpu_share.py [--model alexnet] [--counts 1 2 4] [--images 30000]

For each count N, N processes train the reference network (1, 10) with the grader's
``full`` recipe settings (cnn_course.fit: batch, image size, bf16, channels_last) on the
first ``--images`` training images for ``--epochs`` epochs. They wait at a barrier before
training, so their epochs overlap. Per process: the fastest epoch's images/s and the peak
GPU memory. Per count: the sum of those rates (the GPU's total throughput) and the ratio to
one process. Ray's ``num_gpus`` share for a model follows from where that sum stops
rising (docs/grading-a-class.md). Not a test: numbers depend on the machine.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from cnn_course import fit, get_profile, load_split, seed_everything  # noqa: E402
from cnn_grader.hidden_checks.recipes import grading_recipe  # noqa: E402
from cnn_grader.hidden_checks.reference import load_reference  # noqa: E402


def train_one(rank: int, args: argparse.Namespace, barrier, results) -> None:
    """One process: load, wait for the others, train, report (rate, peak GiB, seconds)."""
    device = torch.device(args.device)
    plan = grading_recipe(args.model, "full").recipe
    recipe = replace(plan, epochs=args.epochs, one_cycle=False, seed=rank,
                     image_size=args.size or plan.image_size)
    images, labels = load_split(True, get_profile("full"))
    test_images, test_labels = load_split(False, get_profile("full"))
    train = (images[:args.images], labels[:args.images])
    test = (test_images[:500], test_labels[:500])
    seed_everything(rank)
    net = load_reference()[args.model](1, 10)
    barrier.wait()
    start = time.perf_counter()
    history = fit(net, train, test, recipe, device=device, progress=False)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
    results.put((rank, history.images_per_second, peak, seconds))


def measure(args: argparse.Namespace, count: int) -> list[tuple[int, float, float, float]]:
    """Run ``count`` processes at once; their results by rank."""
    context = mp.get_context("spawn")
    barrier, results = context.Barrier(count), context.Queue()
    workers = [context.Process(target=train_one, args=(rank, args, barrier, results))
               for rank in range(count)]
    for worker in workers:
        worker.start()
    reports = [results.get(timeout=args.timeout) for _ in workers]
    for worker in workers:
        worker.join()
    failed = [w.exitcode for w in workers if w.exitcode]
    if failed:
        raise SystemExit(f"{len(failed)} of {count} processes failed: exit codes {failed}")
    return sorted(reports)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="alexnet", choices=["alexnet", "vgg16"])
    parser.add_argument("--counts", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--images", type=int, default=30000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=0, help="image size (default: the recipe's)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per count")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        return "benchmark_gpu_share.py needs a CUDA GPU (or --device cpu for a smoke run)"
    where = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"{args.model}, {args.images} images x {args.epochs} epochs per process, on {where}, "
          f"torch {torch.__version__}")
    print("| processes | images/s each | total images/s | x first row | peak GiB each "
          "| seconds each |\n| --- | --- | --- | --- | --- | --- |", flush=True)
    alone = None
    for count in args.counts:
        reports = measure(args, count)
        rates = [rate for _, rate, _, _ in reports]
        total = sum(rates)
        alone = alone or total
        print(f"| {count} | {', '.join(f'{r:,.0f}' for r in rates)} | {total:,.0f} "
              f"| {total / alone:.2f} | {max(p for _, _, p, _ in reports):.1f} "
              f"| {max(s for _, _, _, s in reports):.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
