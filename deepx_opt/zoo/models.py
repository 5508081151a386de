"""The zoo's architectures, each written once against :class:`~deepx_opt.zoo._builder.NetBuilder`.

All models are float32 with a fixed batch of 1 and static shapes, opset 13, one input ``"input"`` and one
output ``"output"``.

Paper models (DeepX, Lane et al. 2016; see ``paper-setup.md``)
---------------------------------------------------------------
``alexnet``
    Caffe's bvlc_alexnet (Krizhevsky et al. 2012): conv1 96×11×11 stride 4, ReLU, LRN(5, 1e-4, 0.75, 1),
    max-pool 3/2; conv2 256×5×5 pad 2 group 2, ReLU, LRN, max-pool 3/2; conv3 384×3×3 pad 1, ReLU;
    conv4 384×3×3 pad 1 group 2, ReLU; conv5 256×3×3 pad 1 group 2, ReLU, max-pool 3/2; fc6 4096, ReLU,
    Dropout; fc7 4096, ReLU, Dropout; fc8 1000; Softmax. The input is 224×224×3, so conv1 takes pad 2
    (as torchvision does): ⌊(224 + 4 − 11) / 4⌋ + 1 = 55, which is what Caffe's 227×227 crop gives without
    padding, and the last pool yields 256×6×6. 60,965,224 parameters, 1.449 GFLOP.
``svhn``
    2 conv, 2 pool, FC, 10 classes on 32×32×3: conv1 64×5×5 (valid), ReLU, max-pool 2/2 → 64×14×14;
    conv2 64×5×5 (valid), ReLU, max-pool 2/2 → 64×5×5, i.e. the **1,600-unit** layer; FC 128, ReLU;
    FC 10; Softmax. 313,546 parameters (the paper: 313K).
    Why this reading of "hidden layers of 1600 and 128 units": a true fully connected layer of 1,600
    outputs after the convolutions would alone hold 1,600·128 + 1,600·F weights (F its input width),
    so 313K parameters would leave F ≤ 65, i.e. pooling 32×32 inputs down to 2×2 — not a plausible
    SVHN net. Taking the 1,600 units to be the flattened conv2/pool2 output (64·5·5) with textbook
    5×5 kernels, 2×2 pooling and 64 channels in both convolutions gives 313.5K, 0.2 % from the paper.
``speakerid``
    DNN 700 → 1000 → 1000 → 106, ReLU, Softmax: 1,808,106 parameters (the paper: 1.8M).
``audioscene``
    DNN 680 → 1000 → 1000 → 19, ReLU, Softmax: 1,701,019 parameters (the paper: 1.7M).

Other synthetic models
----------------------
``resnet50like``
    ResNet-50 v1.5 (He et al. 2016; stride on the 3×3 conv): conv 7×7/2 + BN + ReLU, max-pool 3/2,
    bottleneck stages of 3-4-6-3 blocks (1×1, 3×3, 1×1 convs, each followed by BatchNormalization, ReLU
    after the first two; projection shortcut conv 1×1 + BN on the first block of every stage; residual
    Add then ReLU), global average pool, FC 1000 (logits). BatchNormalization nodes are kept (the
    importer folds them). The last BN of each residual branch has scale ≈ 0.2 so that the untrained
    network's activations stay O(1) through 16 additions. 25,557,032 trainable parameters (torchvision's
    resnet50), 8.2 GFLOP, 175 ONNX nodes.
``resnet101like``
    The same with 3-4-23-3 bottlenecks (ResNet-101 v1.5): 44,549,160 trainable parameters, 15.6 GFLOP,
    345 ONNX nodes, 140 blocks after the importer folds BN/ReLU — the large DAG for solver
    benchmarks (ResNet-50 gives about 72).
``mobilenetlike``
    MobileNet v1, width 1.0, 224 input (Howard et al. 2017): conv 3×3/2 32, then 13 depthwise-separable
    blocks (depthwise 3×3 conv with group = channels, BN, ReLU6; pointwise 1×1, BN, ReLU6), global
    average pool, FC 1000 (logits). ReLU6 is ``Clip(0, 6)``. 4,231,976 trainable parameters, 1.14 GFLOP.
``edgenet``
    A CIFAR-size (32×32×3) edge CNN with one block of each modern kind: conv 3×3/2 24, BN, ReLU;
    depthwise-separable (depthwise 3×3, BN, ReLU6; pointwise 1×1 48, BN, ReLU); a residual basic block (two
    conv 3×3 48 with BN, identity shortcut, ``Add``, ReLU); a strided one (conv 3×3/2 96 and conv 3×3 96,
    projection shortcut conv 1×1/2 96 with BN, ``Add``, ReLU); global average pool, FC 10, Softmax.
    174,442 parameters, 0.039 GFLOP. Calibration runs it beside the paper's models
    (``cost_models.calibrate.ZOO_MODELS``): none of those has a depthwise conv, a residual ``Add``, a
    strided 1×1 conv or a global pool inside it, and small enough to cost the default calibration seconds.

Trained models (real data, see :mod:`deepx_opt.zoo.digits`)
-----------------------------------------------------------
``digits_mlp``
    64 → 256 → 128 → 10, ReLU, Softmax; trained on scikit-learn's digits.
``digits_cnn``
    1×8×8 → conv 16×3×3 pad 1 → ReLU → conv 32×3×3 pad 1 → ReLU → max-pool 2/2 → FC 64 → ReLU
    → FC 10 → Softmax; trained on scikit-learn's digits by numpy code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from deepx_opt.zoo._builder import NetBuilder
from deepx_opt.zoo.digits import load_trained

__all__ = ["ModelSpec", "SPECS"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build one zoo model: ``arch(builder)`` adds the layers and returns the output tensor."""

    name: str
    description: str
    input_shape: tuple[int, ...]
    arch: Callable[[NetBuilder], str]
    trained: bool = False
    paper: bool = False


# ------------------------------------------------------------------------------------- paper models
def _alexnet(b: NetBuilder) -> str:
    x = b.conv("input", 96, 11, stride=4, pad=2, name="conv1")
    x = b.maxpool(b.lrn(b.relu(x), name="norm1"), 3, 2, name="pool1")
    x = b.conv(x, 256, 5, pad=2, group=2, name="conv2")
    x = b.maxpool(b.lrn(b.relu(x), name="norm2"), 3, 2, name="pool2")
    x = b.relu(b.conv(x, 384, 3, pad=1, name="conv3"))
    x = b.relu(b.conv(x, 384, 3, pad=1, group=2, name="conv4"))
    x = b.relu(b.conv(x, 256, 3, pad=1, group=2, name="conv5"))
    x = b.flatten(b.maxpool(x, 3, 2, name="pool5"), name="flatten")
    x = b.dropout(b.relu(b.gemm(x, 4096, name="fc6")), name="drop6")
    x = b.dropout(b.relu(b.gemm(x, 4096, name="fc7")), name="drop7")
    return b.softmax(b.gemm(x, 1000, name="fc8"))


def _svhn(b: NetBuilder) -> str:
    x = b.maxpool(b.relu(b.conv("input", 64, 5, name="conv1")), 2, 2, name="pool1")
    x = b.maxpool(b.relu(b.conv(x, 64, 5, name="conv2")), 2, 2, name="pool2")
    x = b.relu(b.gemm(b.flatten(x, name="flatten"), 128, name="fc1"))
    return b.softmax(b.gemm(x, 10, name="fc2"))


def _dnn(hidden: tuple[int, ...], n_out: int) -> Callable[[NetBuilder], str]:
    def arch(b: NetBuilder) -> str:
        x = "input"
        for i, width in enumerate(hidden, start=1):
            x = b.relu(b.gemm(x, width, name=f"fc{i}"))
        return b.softmax(b.gemm(x, n_out, name=f"fc{len(hidden) + 1}"))

    return arch


# ------------------------------------------------------------------------------------ synthetic CNNs
def _conv_bn(b: NetBuilder, x: str, cout: int, k: int, *, name: str, stride: int = 1, relu: bool = True,
             gamma: float = 1.0) -> str:
    x = b.conv(x, cout, k, stride=stride, pad=k // 2, bias=False, name=name)
    x = b.batchnorm(x, name=name.replace("conv", "bn") if "conv" in name else f"{name}.bn", gamma=gamma)
    return b.relu(x) if relu else x


def _resnet(depths: tuple[int, int, int, int]) -> Callable[[NetBuilder], str]:
    return lambda b: _resnet_bottleneck(b, depths)


def _resnet_bottleneck(b: NetBuilder, depths: tuple[int, int, int, int]) -> str:
    x = _conv_bn(b, "input", 64, 7, stride=2, name="conv1")
    x = b.maxpool(x, 3, 2, pad=1, name="maxpool")
    stages = zip((64, 128, 256, 512), depths, (1, 2, 2, 2))
    for stage, (width, blocks, stride) in enumerate(stages, start=1):
        for i in range(blocks):
            pre = f"layer{stage}.{i}"
            s = stride if i == 0 else 1
            y = _conv_bn(b, x, width, 1, name=f"{pre}.conv1")
            y = _conv_bn(b, y, width, 3, stride=s, name=f"{pre}.conv2")
            y = _conv_bn(b, y, 4 * width, 1, relu=False, gamma=0.2, name=f"{pre}.conv3")
            shortcut = x
            if i == 0:
                shortcut = _conv_bn(b, x, 4 * width, 1, stride=s, relu=False, name=f"{pre}.downsample")
            x = b.relu(b.add(y, shortcut, name=f"{pre}.add"))
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return b.gemm(x, 1000, name="fc")


def _mobilenet(b: NetBuilder) -> str:
    def conv_bn_relu6(x: str, cout: int, k: int, *, name: str, stride: int = 1, group: int = 1) -> str:
        x = b.conv(x, cout, k, stride=stride, pad=k // 2, group=group, bias=False, name=name)
        return b.relu6(b.batchnorm(x, name=f"{name}.bn"))

    x = conv_bn_relu6("input", 32, 3, stride=2, name="conv0")
    cin = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    for i, (cout, stride) in enumerate(plan, start=1):
        x = conv_bn_relu6(x, cin, 3, stride=stride, group=cin, name=f"block{i}.dw")
        x = conv_bn_relu6(x, cout, 1, name=f"block{i}.pw")
        cin = cout
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return b.gemm(x, 1000, name="fc")


def _edgenet(b: NetBuilder) -> str:
    """A CIFAR-size edge CNN with one block of each modern kind: depthwise-separable (MobileNet), residual
    (ResNet basic block, identity shortcut), strided residual with a 1×1 projection shortcut, global pooling."""
    x = _conv_bn(b, "input", 24, 3, stride=2, name="conv1")  # 32×32 → 16×16
    y = b.relu6(b.batchnorm(b.conv(x, 24, 3, pad=1, group=24, bias=False, name="sep.dw"), name="sep.dw.bn"))
    x = _conv_bn(b, y, 48, 1, name="sep.pw")
    y = _conv_bn(b, x, 48, 3, name="res1.conv1")
    y = _conv_bn(b, y, 48, 3, relu=False, gamma=0.2, name="res1.conv2")
    x = b.relu(b.add(y, x, name="res1.add"))
    y = _conv_bn(b, x, 96, 3, stride=2, name="res2.conv1")  # 16×16 → 8×8
    y = _conv_bn(b, y, 96, 3, relu=False, gamma=0.2, name="res2.conv2")
    shortcut = _conv_bn(b, x, 96, 1, stride=2, relu=False, name="res2.downsample")
    x = b.relu(b.add(y, shortcut, name="res2.add"))
    x = b.flatten(b.global_avgpool(x, name="avgpool"), name="flatten")
    return b.softmax(b.gemm(x, 10, name="fc"))


# ----------------------------------------------------------------------------------- trained models
def _digits_mlp(b: NetBuilder) -> str:
    w = load_trained("digits_mlp")[0] if b.materialize else {}
    x = "input"
    for i, width in enumerate((256, 128), start=1):
        x = b.relu(b.gemm(x, width, name=f"fc{i}", weight=w.get(f"fc{i}.weight"), bias_value=w.get(f"fc{i}.bias")))
    return b.softmax(b.gemm(x, 10, name="fc3", weight=w.get("fc3.weight"), bias_value=w.get("fc3.bias")))


def _digits_cnn(b: NetBuilder) -> str:
    w = load_trained("digits_cnn")[0] if b.materialize else {}

    def conv(x: str, cout: int, name: str) -> str:
        return b.relu(b.conv(x, cout, 3, pad=1, name=name, weight=w.get(f"{name}.weight"),
                             bias_value=w.get(f"{name}.bias")))

    x = b.maxpool(conv(conv("input", 16, "conv1"), 32, "conv2"), 2, 2, name="pool")
    x = b.flatten(x, name="flatten")
    x = b.relu(b.gemm(x, 64, name="fc1", weight=w.get("fc1.weight"), bias_value=w.get("fc1.bias")))
    return b.softmax(b.gemm(x, 10, name="fc2", weight=w.get("fc2.weight"), bias_value=w.get("fc2.bias")))


SPECS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("alexnet", "AlexNet (Caffe bvlc_alexnet: grouped conv2/4/5, LRN), ImageNet 1000 classes",
                  (1, 3, 224, 224), _alexnet, paper=True),
        ModelSpec("svhn", "SVHN CNN: 2 conv 5x5 (64 ch), 2 pool, 1600 -> FC 128 -> 10", (1, 3, 32, 32), _svhn,
                  paper=True),
        ModelSpec("speakerid", "SpeakerID DNN: 700 audio features -> 2x FC 1000 -> 106 speakers", (1, 700),
                  _dnn((1000, 1000), 106), paper=True),
        ModelSpec("audioscene", "AudioScene DNN: 680 audio features -> 2x FC 1000 -> 19 scenes", (1, 680),
                  _dnn((1000, 1000), 19), paper=True),
        ModelSpec("resnet50like", "ResNet-50 v1.5 shape: bottlenecks 3-4-6-3, BN kept, residual DAG",
                  (1, 3, 224, 224), _resnet((3, 4, 6, 3))),
        ModelSpec("resnet101like", "ResNet-101 v1.5 shape: bottlenecks 3-4-23-3, BN kept, 140-block DAG",
                  (1, 3, 224, 224), _resnet((3, 4, 23, 3))),
        ModelSpec("mobilenetlike", "MobileNet v1 (width 1.0): depthwise-separable convs, BN, ReLU6",
                  (1, 3, 224, 224), _mobilenet),
        ModelSpec("edgenet", "Edge CNN 32x32: a depthwise-separable, a residual and a strided residual block "
                  "(1x1 shortcut), BN, global average pool, 10 classes", (1, 3, 32, 32), _edgenet),
        ModelSpec("digits_mlp", "MLP 64-256-128-10 trained on sklearn digits (real data)", (1, 64), _digits_mlp,
                  trained=True),
        ModelSpec("digits_cnn", "CNN conv16-conv32-pool-FC64-10 trained on sklearn digits (real data)",
                  (1, 1, 8, 8), _digits_cnn, trained=True),
    )
}
