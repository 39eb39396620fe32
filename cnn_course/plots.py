"""Matplotlib figures the notebooks share: learning curves, image grids, maps, confusion matrices."""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import torch

from .data import CLASS_NAMES
from .train import History


def plot_history(history: History, title: str = "") -> plt.Figure:
    """Training loss, and train and validation (or test) accuracy per epoch."""
    epochs = range(1, len(history.train_loss) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
    left.plot(epochs, history.train_loss, "o-")
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.plot(epochs, history.train_acc, "o-", label="train")
    if history.val_acc:
        right.plot(epochs, history.val_acc, "s-", label="validation")
    if history.test_acc:
        right.plot(epochs, history.test_acc, "s-", label="test")
    right.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    right.legend()
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.set_xticks(list(epochs))
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(
    images: torch.Tensor, labels: Sequence[int] | torch.Tensor,
    predictions: Sequence[int] | torch.Tensor | None = None, columns: int = 8,
    class_names: Sequence[str] = CLASS_NAMES,
) -> plt.Figure:
    """A grid of images titled with their labels (and predictions, red when wrong)."""
    images = images.detach().cpu().numpy()
    if images.ndim == 4:
        images = images[:, 0]
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.4 * columns, 1.6 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= len(images):
            continue
        ax.imshow(images[i], cmap="gray")
        title = class_names[int(labels[i])]
        color = "black"
        if predictions is not None:
            guess = int(predictions[i])
            title = f"{title}\n→ {class_names[guess]}"
            color = "black" if guess == int(labels[i]) else "red"
        ax.set_title(title, fontsize=7, color=color)
    fig.tight_layout()
    return fig


def show_maps(maps: torch.Tensor, columns: int = 8, title: str = "",
              figsize: tuple[float, float] | None = None, signed: bool = False,
              titles: Sequence[str] | None = None) -> plt.Figure:
    """Maps ``[C, H, W]`` (activation maps or filters) side by side.

    Panel ``i`` is titled ``titles[i]``, or ``i`` without ``titles``.

    * ``signed=False``: every panel gets its own viridis scale, from its smallest value
      (dark purple) to its largest (yellow). It shows where one map is strong or weak,
      not the sign of a value, nor which of two maps is stronger.
    * ``signed=True``: one diverging scale shared by all panels and symmetric around
      zero, from ``-L`` (blue) through 0 (white) to ``+L`` (red), where ``L`` is the
      largest absolute value in ``maps``; a colour bar on the right gives the numbers.
      Colours then compare signs and sizes across panels. Every value is drawn as one
      flat square (no smoothing, which would also mix colours across zero).

    ``figsize`` (inches) defaults to 1.3 x 1.3 per map (plus room for the colour bar).
    """
    maps = maps.detach().cpu().numpy()
    if titles is not None and len(titles) != len(maps):
        raise ValueError(f"{len(titles)} titles for {len(maps)} maps")
    rows = -(-len(maps) // columns)
    figsize = figsize or (1.3 * columns + (0.8 if signed else 0.0), 1.3 * rows)
    fig, axes = plt.subplots(rows, columns, figsize=figsize, squeeze=False)
    limit = float(abs(maps).max()) if maps.size else 0.0
    limit = limit if limit > 0 else 1.0  # an all-zero input still gets a valid scale
    scale = ({"cmap": "RdBu_r", "vmin": -limit, "vmax": limit, "interpolation": "nearest"} if signed
             else {"cmap": "viridis"})
    image = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(maps):
            image = ax.imshow(maps[i], **scale)
            ax.set_title(str(i) if titles is None else titles[i], fontsize=7)
    if title:
        fig.suptitle(title)
    if signed and image is not None:
        right = 1 - 0.75 / figsize[0]  # keep 0.75 inch on the right for the colour bar
        fig.tight_layout(rect=(0, 0, right, 1))
        fig.colorbar(image, cax=fig.add_axes((right + 0.15 / figsize[0], 0.15, 0.12 / figsize[0], 0.7)))
    else:
        fig.tight_layout()
    return fig


def confusion_matrix(labels: torch.Tensor, predictions: torch.Tensor, classes: int = 10) -> torch.Tensor:
    """``[true, predicted]`` counts."""
    index = labels.long().cpu() * classes + predictions.long().cpu()
    return torch.bincount(index, minlength=classes * classes).reshape(classes, classes)


def plot_confusion_matrix(
    labels: torch.Tensor, predictions: torch.Tensor, class_names: Sequence[str] = CLASS_NAMES,
) -> plt.Figure:
    """The confusion matrix as a heat map with counts in the cells."""
    matrix = confusion_matrix(labels, predictions, len(class_names))
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    ax.imshow(matrix.numpy(), cmap="Blues")
    ticks = range(len(class_names))
    ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(ticks, class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true")
    high = matrix.max().item() / 2
    for t in ticks:
        for p in ticks:
            value = matrix[t, p].item()
            ax.text(p, t, str(value), ha="center", va="center", fontsize=7,
                    color="white" if value > high else "black")
    fig.tight_layout()
    return fig
