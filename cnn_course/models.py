"""The lecture's naive ConvNet for 1x28x28 FashionMNIST images."""
from torch import nn


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

    def forward(self, x):
        x = self.convlayers(x)
        x = self.classifier(x)
        return x
