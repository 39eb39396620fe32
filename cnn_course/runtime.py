"""Device selection and run profiles (full / cpu / ci)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

PROFILE_ENV = "CNN_COURSE_PROFILE"


@dataclass(frozen=True)
class Profile:
    """How much data and which image sizes a run uses.

    ``train_size``/``test_size`` of ``None`` mean the whole split. ``subset``
    selects the small FashionMNIST subset shipped in ``cnn_course/fashion_mnist_subset``.
    ``image_sizes`` maps a model family to the side length it is trained at.
    """

    name: str
    description: str
    subset: bool
    train_size: int | None
    test_size: int | None
    image_sizes: dict[str, int] = field(default_factory=dict)

    def image_size(self, model: str) -> int:
        """Side length at which ``model`` ("naive", "alexnet", "vgg16") trains."""
        try:
            return self.image_sizes[model]
        except KeyError:
            raise ValueError(
                f"profile {self.name!r} has no image size for model {model!r}; "
                f"known models: {', '.join(sorted(self.image_sizes))}"
            ) from None


PROFILES: dict[str, Profile] = {
    "full": Profile(
        name="full",
        description="GPU: all 60,000/10,000 images at the papers' resolutions",
        subset=False,
        train_size=None,
        test_size=None,
        image_sizes={"naive": 28, "alexnet": 227, "vgg16": 224},
    ),
    "cpu": Profile(
        name="cpu",
        description="laptop without GPU: 12,000/2,000 images, small resolutions",
        subset=False,
        train_size=12_000,
        test_size=2_000,
        image_sizes={"naive": 28, "alexnet": 67, "vgg16": 32},
    ),
    "ci": Profile(
        name="ci",
        description="quick runs: the 2,000/500-image subset that comes with the course, "
                    "small resolutions",
        subset=True,
        train_size=None,
        test_size=None,
        image_sizes={"naive": 28, "alexnet": 67, "vgg16": 32},
    ),
}


def pick_device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def get_profile(name: str | None = None) -> Profile:
    """The profile called ``name``, else ``$CNN_COURSE_PROFILE``, else chosen by device.

    Without an explicit choice a CUDA machine gets ``full`` and anything else ``cpu``.
    """
    name = name or os.environ.get(PROFILE_ENV) or None
    if name is None:
        return PROFILES["full" if pick_device().type == "cuda" else "cpu"]
    key = name.strip().lower()
    if key not in PROFILES:
        raise ValueError(
            f"unknown run profile {name!r} (from {PROFILE_ENV} or the argument); "
            f"valid profiles: {', '.join(PROFILES)}"
        )
    return PROFILES[key]


def describe_run(profile: Profile | None = None, device: torch.device | None = None) -> str:
    """One line naming the profile, the device and the PyTorch version."""
    profile = profile or get_profile()
    device = device or pick_device()
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return (
        f"profile: {profile.name} ({profile.description}) | device: {where} | "
        f"torch {torch.__version__}"
    )
