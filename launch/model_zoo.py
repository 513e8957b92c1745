"""The networks the benchmarks and tests run, in plain PyTorch: one definition of each.

Imports torch only (and, for the digits inputs, scikit-learn): no mpcrt runtime, so
CrypTen's process (launch/crypten_side.py, run by its path) imports this file too.

    lenet5          LeNet-5 on 1x28x28: conv 6@5x5 pad 2, ReLU, maxpool 2, conv 16@5x5, ReLU,
                    maxpool 2, FC 120, ReLU, FC 84, ReLU, FC 10
    resnet18        torchvision.models.resnet18's architecture (BasicBlock, [2, 2, 2, 2], 7x7
                    stem, maxpool 3/2, avgpool, FC 1000), written out (torchvision is not a
                    dependency); kaiming-normal convolutions as torchvision initialises them
    resnet18_cifar  the same blocks in the CIFAR layout: 3x3 stride-1 stem, no maxpool, FC 10
    vgg16           VGG-16 with BatchNorm for 32x32 inputs: 13 conv3x3-BN-ReLU in five stages,
                    each closed by maxpool 2, then FC 512-10
    digits_mlp      the digits MLP 64-128-10 of CrypTen's comparison (not examples/digits_demo.py's)
    digits_cnn      the 2-conv digits CNN of CrypTen's comparison: conv 16, ReLU, conv 32, ReLU,
                    FC 2048-10 (on 1x8x8)
    encoder_layer   nn.TransformerEncoderLayer(d, heads, ff, GELU, batch first)

Random weights come from torch's global generator: seed it (torch.manual_seed) before
building a model and every process builds the same one. `randomize_batchnorm` gives the
BatchNorms random statistics (stand-ins for trained ones).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class LeNet5(nn.Module):
    """Classic LeNet-5 on 1x28x28 (ReLU and max pooling)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(120, 84)
        self.relu4 = nn.ReLU()
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        x = x.flatten(1)
        x = self.relu3(self.fc1(x))
        x = self.relu4(self.fc2(x))
        return self.fc3(x)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock: conv3x3-BN-ReLU-conv3x3-BN, plus the (downsampled) input, ReLU."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x):
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision.models.resnet18's architecture (BasicBlock, [2, 2, 2, 2]); with cifar, the
    CIFAR layout of the same blocks (a 3x3 stride-1 stem and no maxpool, for 32x32 inputs)."""

    def __init__(self, num_classes: int = 1000, cifar: bool = False):
        super().__init__()
        self.inplanes = 64
        self.cifar = cifar
        if cifar:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = None if cifar else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 2)
        self.layer2 = self._make_layer(128, 2, stride=2)
        self.layer3 = self._make_layer(256, 2, stride=2)
        self.layer4 = self._make_layer(512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512 * BasicBlock.expansion, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * BasicBlock.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * BasicBlock.expansion),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        if self.maxpool is not None:
            x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x)
        x = x.flatten(1)
        return self.fc(x)


class VGG16(nn.Module):
    """VGG-16 with BatchNorm for 32x32 inputs (CIFAR-10): 13 conv3x3-BN-ReLU layers in five
    stages of 2, 2, 3, 3, 3, each closed by a 2x2 maxpool (down to 512 x 1 x 1), then FC 512-10."""

    STAGES = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))

    def __init__(self, num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for cout, convs in self.STAGES:
            for _ in range(convs):
                layers += [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
                cin = cout
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


class DigitsMLP(nn.Module):
    """64-128-10 with one ReLU: the digits MLP of CrypTen's comparison workloads."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(64, 128)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class DigitsCNN(nn.Module):
    """conv 16@3x3, ReLU, conv 32@3x3, ReLU, FC 2048-10 on 1x8x8: CrypTen's comparison digits CNN."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(2048, 10)

    def forward(self, x):
        x = self.relu1(self.conv1(x))
        x = self.relu2(self.conv2(x))
        return self.fc(self.flatten(x))


def encoder_layer(d: int, heads: int, ff: int) -> nn.Module:
    """One transformer encoder layer (GELU, batch first), in eval mode."""
    return nn.TransformerEncoderLayer(d, heads, ff, activation="gelu", batch_first=True).eval()


class SeqLSTM(nn.Module):
    """A sequence classifier: a 2-layer LSTM (batch first), its last step through a Linear."""

    def __init__(self, features: int = 16, hidden: int = 64, classes: int = 5):
        super().__init__()
        self.rnn = nn.LSTM(features, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class TinyEncoder(nn.Module):
    """A token classifier: one transformer encoder layer (GELU), mean-pooled, then a Linear."""

    def __init__(self, d: int = 64, heads: int = 4, ff: int = 256, classes: int = 5):
        super().__init__()
        self.layer = encoder_layer(d, heads, ff)
        self.fc = nn.Linear(d, classes)

    def forward(self, x):
        return self.fc(self.layer(x).mean(dim=1))


# name -> the class (or function) that builds the network with default arguments
MODELS: dict[str, Callable[[], nn.Module]] = {
    "lenet5": LeNet5,
    "resnet18": ResNet18,
    "resnet18_cifar": lambda: ResNet18(10, cifar=True),
    "vgg16": VGG16,
    "digits_mlp": DigitsMLP,
    "digits_cnn": DigitsCNN,
    "lstm": SeqLSTM,
    "encoder": TinyEncoder,
}


def randomize_batchnorm(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Gives every BatchNorm random affine parameters and running statistics (in place; returns model).

    Stands in for trained statistics: with torchvision's constant init (weight 1, bias 0,
    mean 0, var 1) every BatchNorm folds to the identity. It also matters to CrypTen: the
    TorchScript ONNX exporter de-duplicates the equal initializers into `Identity` nodes,
    an op crypten.nn.from_onnx (0.4.1) does not support.
    """
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_mean.copy_(torch.randn(c, generator=generator) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
    return model


def last_digits(n: int, image: bool):
    """The last n samples of scikit-learn's bundled digits set, pixels / 16 (numpy float64;
    n x 64, or n x 1 x 8 x 8 with image): the digits inputs of CrypTen's comparison."""
    from sklearn.datasets import load_digits

    x = load_digits().data[-n:] / 16.0
    return x.reshape(n, 1, 8, 8) if image else x
