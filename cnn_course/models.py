"""The lecture's naive ConvNet for 1x28x28 FashionMNIST images, and its training recipe."""
import torch
from torch import nn

from .runtime import Profile
from .train import Recipe

# Lowest final test accuracy that the lecture's recipe (``naive_recipe``) must reach, per
# profile: asserted by lecture 4, which trains on the training split less its validation
# set (``load_splits``). Each value sits below a 2-core CPU float32 run (seed 0) with a
# margin: ``cpu`` 0.854 and ``ci`` 0.738 (lecture 4's stored run and its "Measured here"
# note); ``full`` 0.921 after 3 epochs, measured before the validation split, on all 60,000
# training images. ``full`` is the course's target of 90%; ``ci`` leaves the widest
# margin, its 500 test images being the noisiest.
NAIVE_MIN_TEST_ACCURACY: dict[str, float] = {"full": 0.90, "cpu": 0.82, "ci": 0.65}


class NaiveConvNet(nn.Module):
    """Three 3x3 conv layers with ReLU and max-pooling, then a two-layer classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.convlayers = nn.Sequential(
            nn.Conv2d(1, 64, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(64, 128, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(128, 256, 3, 1, 1),
            nn.ReLU(),
            nn.MaxPool2d(7, 1),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 10]`` for images ``[N, 1, 28, 28]``."""
        x = self.convlayers(x)
        x = self.classifier(x)
        return x


def naive_recipe(profile: Profile, one_cycle: bool = True) -> Recipe:
    """The lecture's recipe: Adam, batches of 64, 3 epochs, seed 0.

    One-cycle schedule peaking at 2e-3 (the default), or ``one_cycle=False`` for the
    original course's constant 1e-3.
    """
    return Recipe(epochs=3, batch_size=64, lr=2e-3 if one_cycle else 1e-3, optimizer="adam",
                  one_cycle=one_cycle, image_size=profile.image_size("naive"), seed=0)
