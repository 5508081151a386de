"""Regenerate the torch.onnx-exported test models (needs torch; run by hand, not in CI).

    python tests/data/make_torch_models.py

Writes ``torch_resnet_tiny.onnx``: a small ResNet-style CNN with skip connections, BatchNorm and a
depthwise conv, exported by ``torch.onnx.export`` with a dynamic batch dimension, plus ``.npz`` with one
input and torch's output for it.
"""

from pathlib import Path

import numpy as np
import torch
from torch import nn

HERE = Path(__file__).parent


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.dw = nn.Conv2d(cout, cout, 3, 1, 1, groups=cout, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.short = None
        if stride != 1 or cin != cout:
            self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.dw(y))
        s = x if self.short is None else self.short(x)
        return torch.relu(y + s)


class TinyResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layer1 = Block(16, 16, 1)
        self.layer2 = Block(16, 32, 2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(self.stem(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


def _trained_net():
    """The network in eval mode, with BatchNorm statistics from a few training-mode batches."""
    torch.manual_seed(0)
    net = TinyResNet()
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(8, 3, 32, 32))
    return net.eval()


def _save_reference(net, x, stem: str) -> None:
    with torch.no_grad():
        y = net(x).numpy()
    np.savez(HERE / f"{stem}.npz", input=x.numpy(), logits=y)
    print("wrote", HERE / f"{stem}.onnx", (HERE / f"{stem}.onnx").stat().st_size, "bytes")


def main():
    """TorchScript-based exporter (``dynamo=False``), opset 17, dynamic batch."""
    net = _trained_net()
    x = torch.randn(1, 3, 32, 32)
    torch.onnx.export(net, (x,), str(HERE / "torch_resnet_tiny.onnx"), input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    _save_reference(net, x, "torch_resnet_tiny")


def main_dynamo():
    """The same network through the torch.export-based exporter (torch's default since 2.9)."""
    net = _trained_net()
    x = torch.randn(1, 3, 32, 32)
    prog = torch.onnx.export(net, (x,), dynamo=True, input_names=["input"], output_names=["logits"],
                             dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1, max=64)}})
    prog.save(str(HERE / "torch_resnet_tiny_dynamo.onnx"))
    _save_reference(net, x, "torch_resnet_tiny_dynamo")


if __name__ == "__main__":
    main()
    main_dynamo()
