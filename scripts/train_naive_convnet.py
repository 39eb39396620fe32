"""Train the lecture's naive ConvNet with the lecture's recipe and print the run's record.

    CNN_COURSE_PROFILE=full python scripts/train_naive_convnet.py [--constant-lr]

The same model, data, validation split and recipe as lectures/04_naive_convnet.ipynb
(``naive_recipe``, ``load_splits``), without the notebook: validation accuracy per epoch,
the test accuracy once at the end; for measuring the `full` profile on any machine (the lecture's
stored outputs come from the `cpu` profile). ``--constant-lr`` uses the original
course's constant Adam 1e-3 instead of the one-cycle schedule.
"""
from __future__ import annotations

import argparse
import time

from cnn_course import (NaiveConvNet, describe_run, fit, get_profile, load_splits, naive_recipe,
                        pick_device, seed_everything)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--constant-lr", action="store_true",
                        help="constant Adam 1e-3 (the original course) instead of one-cycle")
    args = parser.parse_args()
    profile, device = get_profile(), pick_device()
    recipe = naive_recipe(profile, one_cycle=not args.constant_lr)
    print(describe_run(profile, device))
    print(recipe)
    train, val, test = load_splits(profile)
    seed_everything(0)
    start = time.perf_counter()
    history = fit(NaiveConvNet(), train, test, recipe, device=device, val=val)
    seconds = time.perf_counter() - start
    print(f"{len(train[1]):,} training / {len(val[1]):,} validation / {len(test[1]):,} test "
          f"images, {seconds:.0f} s, {history.images_per_second:,.0f} training images/s")
    for epoch, (loss, acc) in enumerate(zip(history.train_loss, history.val_acc), 1):
        print(f"epoch {epoch}: training loss {loss:.4f}, validation accuracy {acc:.4f}")


if __name__ == "__main__":
    main()
