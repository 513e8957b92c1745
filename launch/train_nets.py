"""The demo networks of `mpcrt train`, in plain torch (no mpcrt import), so that the CrypTen
side (launch/crypten_train.py, run by CrypTen's own interpreter) trains the very same ones."""
from __future__ import annotations

MODELS = ("cnn", "mlp", "lenet")


def build_net(name: str, seed: int = 0):
    """The demo networks: cnn (digits 1x8x8), mlp (64-128-10), lenet (LeNet-5 on 1x28x28)."""
    import torch
    import torch.nn as nn

    torch.manual_seed(seed)
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)), (1, 1, 8, 8)
    if name == "cnn":
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(32 * 2 * 2, 10)), (1, 1, 8, 8)
    if name == "lenet":
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10)), (1, 1, 28, 28)
    raise ValueError(f"unknown model {name!r}: one of {', '.join(MODELS)}")
