"""Backbones: ResNet-18, ResNet-50 and ResNeXt-50 32x4d in plain torch, as one TorchScript-able classifier.

The state-dict keys and shapes are those of the published torchvision weights (conv1, bn1, layer1..layer4
with `layerN.M.conv1/bn1/conv2/bn2(/conv3/bn3)` and `layerN.0.downsample.0/.1`, head `fc`), so a file of
ImageNet weights loads with `load_init_weights`. Blocks are "ResNet v1.5" (the stride sits on the 3x3 conv).

    model = build_model("resnext50_32x4d", num_classes=359)      # global max pooling (58.com)
    logits, embedding = model(images)                            # (N, 359), (N, 2048)

58.com outputs both the label ids and the 2048-d pooled embedding, and chose global max pooling over
average pooling; both poolings are offered. OLX fine-tunes by training only the last layer first and then
unfreezing everything: `set_backbone_trainable(model, False)` / `(model, True)`.
"""

import os
from collections.abc import Iterator, Mapping
from typing import Optional

# No `from __future__ import annotations` here: TorchScript reads the annotations of the scripted modules.

import numpy as np
import torch
from torch import Tensor, nn

# The config's choices: ARCHITECTURES, the names accepted by `build_model`; POOLINGS, the global pooling of the
# last feature map, max (58.com's choice) or average (torchvision's).
from tagmill.config import ARCHITECTURES, POOLINGS

HEAD_PREFIX = "fc."
"""State-dict prefix of the classifier head; everything else is the backbone."""


def _numpy_reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


# A tagmill checkpoint also holds numpy's RNG state (a uint32 array): these let weights_only=True rebuild it.
# _reconstruct only allocates an array of an allowed class (np.ndarray) and dtype; it runs no other code.
# Here, where the first loader of checkpoints (`load_init_weights`) is: the trainer and labeling.teacher load
# the same files.
CHECKPOINT_GLOBALS = [(_numpy_reconstruct(), "numpy._core.multiarray._reconstruct"),
                      (_numpy_reconstruct(), "numpy.core.multiarray._reconstruct"),
                      np.ndarray, np.dtype, type(np.dtype(np.uint32))]
"""Everything beyond tensors and plain containers that a checkpoint may name: the allow-list of
torch.serialization.safe_globals for every loader of tagmill checkpoints."""

# arch -> (block kind, blocks per stage, groups, width per group)
_SPECS = {
    "resnet18": ("basic", (2, 2, 2, 2), 1, 64),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, 64),
    "resnext50_32x4d": ("bottleneck", (3, 4, 6, 3), 32, 4),
}


class BasicBlock(nn.Module):
    """Two 3x3 convs with a residual connection (ResNet-18/34)."""

    expansion: int = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock supports only groups=1 and base_width=64")
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (grouped for ResNeXt, carrying the stride: v1.5), 1x1 expand, residual."""

    expansion: int = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: Optional[nn.Module] = None,
                 groups: int = 1, base_width: int = 64):
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ImageClassifier(nn.Module):
    """ResNet/ResNeXt backbone + global pooling + `fc`.

    forward(x: float (N, 3, H, W), already normalized) -> (logits (N, num_classes), embedding (N, D)),
    where the embedding is the pooled penultimate feature (D = 512 for resnet18, 2048 otherwise) and
    logits = fc(embedding). Attribute names match torchvision's, so `state_dict()` keys do too.
    `arch`, `pooling`, `num_classes` and `embedding_dim` stay readable after `torch.jit.script`.
    """

    def __init__(self, arch: str, num_classes: int, pooling: str = "max", zero_init_residual: bool = False):
        super().__init__()
        kind, layers, groups, width_per_group = _SPECS[arch]
        block = BasicBlock if kind == "basic" else Bottleneck
        self.arch = arch
        self.pooling = pooling
        self.num_classes = num_classes
        self.embedding_dim = 512 * block.expansion
        self.backbone_frozen = False
        self._inplanes = 64
        self._groups = groups
        self._base_width = width_per_group

        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.fc = nn.Linear(self.embedding_dim, num_classes)
        _initialize(self, zero_init_residual)

    def _make_layer(self, block, planes: int, blocks: int, stride: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * block.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        stage = [block(self._inplanes, planes, stride, downsample, self._groups, self._base_width)]
        self._inplanes = planes * block.expansion
        stage += [block(self._inplanes, planes, 1, None, self._groups, self._base_width) for _ in range(1, blocks)]
        return nn.Sequential(*stage)

    def feature_map(self, x: Tensor) -> Tensor:
        """The last feature map (N, D, H/32, W/32), before global pooling."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.feature_map(x)
        if self.pooling == "max":
            embedding = torch.amax(features, dim=(2, 3))
        else:
            embedding = torch.mean(features, dim=(2, 3))
        return self.fc(embedding), embedding

    def train(self, mode: bool = True) -> "ImageClassifier":
        """As nn.Module.train, but while the backbone is frozen its BatchNorm layers stay in eval mode:
        a frozen backbone must not drift through its running statistics either (Keras, used by OLX, runs
        BatchNorm of non-trainable layers in inference mode for the same reason)."""
        super().train(mode)
        if mode and self.backbone_frozen:
            for name, module in self.named_modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm) and not name.startswith("fc"):
                    module.eval()
        return self


def _initialize(model: ImageClassifier, zero_init_residual: bool) -> None:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    # MSURU 3.3: "Weights of the final fully connected layer are sampled from a zero-mean Gaussian with
    # standard deviation 0.01."
    nn.init.normal_(model.fc.weight, mean=0.0, std=0.01)
    nn.init.zeros_(model.fc.bias)
    if zero_init_residual:
        # Each block then starts as the identity, which helps deep nets early in training (Goyal et al. 2017).
        for module in model.modules():
            if isinstance(module, Bottleneck):
                nn.init.zeros_(module.bn3.weight)
            elif isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)


def build_model(arch: str, num_classes: int, pooling: str = "max", *,
                zero_init_residual: bool = False) -> ImageClassifier:
    """A freshly initialized classifier.

    arch: one of ARCHITECTURES. num_classes >= 1. pooling: "max" (default, 58.com) or "avg".
    Init: kaiming normal (fan_out) convs, BatchNorm weight 1 / bias 0, fc weight ~ N(0, 0.01) and bias 0
    (MSURU 3.3); zero_init_residual=True also zeroes the last BatchNorm weight of every block.
    """
    if arch not in _SPECS:
        raise ValueError(f"unknown architecture {arch!r}; allowed: {', '.join(ARCHITECTURES)}")
    if pooling not in POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; allowed: {', '.join(POOLINGS)}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return ImageClassifier(arch, num_classes, pooling, zero_init_residual)


def head_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """The classifier head's parameters (`fc.weight`, `fc.bias`)."""
    for name, param in model.named_parameters():
        if name.startswith(HEAD_PREFIX):
            yield param


def backbone_parameters(model: nn.Module) -> Iterator[nn.Parameter]:
    """Every parameter but the head's."""
    for name, param in model.named_parameters():
        if not name.startswith(HEAD_PREFIX):
            yield param


def set_backbone_trainable(model: ImageClassifier, trainable: bool) -> None:
    """Freeze (False) or unfreeze (True) everything but `fc` (OLX: train the last layer first, then all).

    Frozen means requires_grad=False on the backbone parameters and, from the next `model.train()` on,
    backbone BatchNorm layers in eval mode (running statistics fixed). Calls `model.train(model.training)`
    so the change applies at once. An optimizer built over all parameters skips those without a gradient,
    so the same optimizer can be kept across the unfreeze.
    """
    for param in backbone_parameters(model):
        param.requires_grad_(trainable)
    model.backbone_frozen = not trainable
    model.train(model.training)


def _shape_signature(arch: str, num_classes: int) -> dict[str, tuple[int, ...]]:
    # Built on the meta device: shapes only, no memory and no init cost.
    with torch.device("meta"):
        model = ImageClassifier(arch, num_classes)
    return {key: tuple(value.shape) for key, value in model.state_dict().items()}


def _guess_architecture(state: Mapping[str, Tensor]) -> str:
    """Which ARCHITECTURES entry the file's backbone keys and shapes fit, in words."""
    found = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    best, best_matches, best_total = "", -1, 0
    for arch in ARCHITECTURES:
        expected = {k: s for k, s in _shape_signature(arch, 1).items() if not k.startswith(HEAD_PREFIX)}
        matches = sum(1 for k, s in expected.items() if found.get(k) == s)
        required = [k for k in expected if not k.endswith("num_batches_tracked")]
        if all(found.get(k) == expected[k] for k in required) and set(found) <= set(expected):
            return f"the file fits {arch}"
        if matches > best_matches:
            best, best_matches, best_total = arch, matches, len(expected)
    return (f"the file fits none of {', '.join(ARCHITECTURES)} "
            f"(closest: {best}, {best_matches} of its {best_total} backbone entries match)")


def _read_state_dict(path: str | os.PathLike) -> dict[str, Tensor]:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"init weights file not found: {path}")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):  # a `tagmill train` checkpoint too
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a non-weights pickle, a truncated file, ...
        raise ValueError(f"{path}: cannot be read as a weights-only state-dict file ({err})") from err
    if isinstance(obj, Mapping):
        for entry in ("state_dict", "model"):
            if isinstance(obj.get(entry), Mapping):
                obj = obj[entry]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (name -> tensor), or a dict with a 'state_dict' or "
                         f"'model' entry holding one; found {type(obj).__name__}")
    # DDP wraps the model, so its checkpoints prefix every key with "module.".
    return {(k[len("module."):] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_init_weights(model: ImageClassifier, path: str | os.PathLike,
                      head_rows: Optional[list[int]] = None) -> dict:
    """Load initial weights (e.g. ImageNet torchvision weights, or a checkpoint) into `model`, in place.

    The file (read with weights_only=True) holds a state dict, or a dict whose "state_dict" or "model"
    entry is one (a `tagmill train` checkpoint among them); a leading "module." (DDP) is stripped. The head
    `fc.*` is loaded only when both `fc.weight` and `fc.bias` are present with the model's shapes; otherwise
    (a new label space, or a backbone-only file) the head keeps its init and those keys are reported in
    "skipped". head_rows (a file of another model of ours, whose class names are known): for each of
    `model`'s classes the row of the file's head it takes (-1: none, that row keeps its init), so a head
    carries over class by class whatever the two label spaces' sizes and orders; reported as
    "carried_classes". Missing `*.num_batches_tracked` entries (older files) keep the model's value. Any
    other missing, unexpected or differently shaped key raises ValueError naming the file, the keys and the
    architecture the file seems to fit.

    Returns {"loaded": number of tensors copied, "skipped": sorted head keys not loaded, "file": path}.
    """
    state = _read_state_dict(path)
    expected = model.state_dict()

    head_keys = sorted(k for k in expected if k.startswith(HEAD_PREFIX))
    carried = None
    if head_rows is not None and all(k in state for k in head_keys):
        if len(head_rows) != model.num_classes:
            raise ValueError(f"{path}: {len(head_rows)} head rows given for a model of {model.num_classes} classes")
        rows = torch.tensor(head_rows, dtype=torch.long)
        have = rows >= 0
        if bool((rows >= len(state[head_keys[0]])).any()):
            raise ValueError(f"{path}: its head has {len(state[head_keys[0]])} rows, head rows up to "
                             f"{int(rows.max())} given")
        for key in head_keys:  # a head of another embedding width is left to the shape check below (skipped)
            if state[key].shape[1:] == expected[key].shape[1:]:
                head = expected[key].clone()
                head[have] = state[key][rows[have]]
                state = {**state, key: head}
        carried = int(have.sum())
    head_fits = all(k in state and state[k].shape == expected[k].shape for k in head_keys)
    skipped = sorted(set(head_keys) | {k for k in state if k.startswith(HEAD_PREFIX)}) if not head_fits else []

    missing = sorted(k for k in expected if k not in state and k not in skipped
                     and not k.endswith("num_batches_tracked"))
    unexpected = sorted(k for k in state if k not in expected and k not in skipped)
    mismatched = sorted(f"{k} {list(state[k].shape)} vs model {list(expected[k].shape)}"
                        for k in state if k in expected and k not in skipped and state[k].shape != expected[k].shape)
    problems = [(what, keys) for what, keys in (("missing", missing), ("unexpected", unexpected),
                                                ("shape-mismatched", mismatched)) if keys]
    if problems:
        details = "; ".join(f"{len(keys)} {what} key(s), first: {', '.join(keys[:3])}" for what, keys in problems)
        raise ValueError(f"{path}: does not fit the model ({model.arch}, {model.num_classes} classes): {details}; "
                         f"{_guess_architecture(state)}. Pick the matching architecture or another file.")

    to_load = {k: v for k, v in state.items() if k not in skipped}
    for key in expected:
        if key not in to_load and key.endswith("num_batches_tracked"):
            to_load[key] = expected[key]
    if skipped:
        to_load.update({k: expected[k] for k in head_keys})
    model.load_state_dict(to_load, strict=True)
    loaded = sum(1 for k in state if k not in skipped)
    report = {"loaded": loaded, "skipped": skipped, "file": str(path)}
    return report if carried is None or skipped else {**report, "carried_classes": carried}
