"""Helpers shared by the course's notebooks and its grader.

Import what you need, e.g. ``from cnn_course import get_profile, load_split, fit``.
"""
from .data import (CLASS_NAMES, load_split, load_splits, locate_fashion_mnist, split_validation,
                   torchvision_datasets, validation_split)
from .layers import count_parameters, layer_table, print_layer_table, relative_error, trace
from .models import NAIVE_MIN_TEST_ACCURACY, NaiveConvNet, naive_recipe
from .runtime import Profile, describe_run, get_profile, pick_device
from .train import History, Recipe, evaluate, fit, predict, prepare_batch, seed_everything

__all__ = [
    "CLASS_NAMES", "History", "NAIVE_MIN_TEST_ACCURACY", "NaiveConvNet", "Profile", "Recipe", "count_parameters",
    "describe_run", "evaluate", "fit", "get_profile", "layer_table", "load_split",
    "load_splits", "locate_fashion_mnist", "naive_recipe", "pick_device", "predict", "prepare_batch", "print_layer_table",
    "relative_error", "seed_everything", "split_validation", "torchvision_datasets", "trace", "validation_split",
]
