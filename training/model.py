"""A compact edge CNN for inspection frames: depthwise-separable blocks, plain torch.

Only ops every edge runtime knows (Conv with BatchNorm folded in, Clip for ReLU6 or
Sigmoid*Mul for SiLU, Add, ReduceMean/ReduceMax for the global pools, Concat, Gemm), so it
exports to ONNX (checked: ``torch.onnx.export(..., dynamo=True)`` matches torch to 1e-9),
quantises to INT8 and builds as a TensorRT engine without custom layers. Input is (N, 3, S, S) float,
normalised as in :mod:`training.data`; any S works (global pooling), ``image_size``
is recorded so exporters know the intended shape.

:class:`LenslineEnsemble` holds ``members`` such networks trained from different seeds and
outputs the log of their mean softmax, so a softmax of its output is the ensemble's probability
and every consumer of logits (evaluation, ONNX export, INT8, the edge runtime) takes it as it
is: one module, one checkpoint, one ONNX graph (docs/training.md, "Ensembles").

Layout for ``width=w`` at 64 px (spatial size after each stage)::

    stem   conv3x3/2   3 -> w      32x32
    block  ds/1        w -> w      32x32  (residual)
    block  ds/2        w -> 2w     16x16
    block  ds/1       2w -> 2w     16x16  (residual)
    block  ds/2       2w -> 4w      8x8
    block  ds/1       4w -> 4w      8x8   (residual)
    block  ds/2       4w -> 8w      4x4
    block  ds/1       8w -> 8w      4x4   (residual)
    pool   global average ++ max   -> (N, 16w)  = features(x)   (pool="avg" or "max": 8w)
    head   dropout, linear 16w -> K            = forward(x)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

__all__ = [
    "ModelConfig",
    "LenslineNet",
    "LenslineEnsemble",
    "build_model",
    "build_network",
    "count_parameters",
]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture arguments; everything needed to rebuild the network from a checkpoint."""

    num_classes: int
    width: int = 16  # stem channels; the embedding has 8 * width channels
    image_size: int = 64  # intended square input side (pixels)
    dropout: float = 0.2
    activation: str = "relu6"  # "relu6" quantises best; "silu" is a little more accurate
    pool: str = "avgmax"  # "avg", "max", or both concatenated: a small defect anywhere shows in max
    members: int = 1  # > 1: a LenslineEnsemble of that many networks of this architecture

    def to_dict(self) -> dict:
        return asdict(self)


def _activation(name: str) -> nn.Module:
    if name == "relu6":
        return nn.ReLU6(inplace=True)
    if name == "silu":
        return nn.SiLU(inplace=True)
    raise ValueError(f"unknown activation {name!r}; expected 'relu6' or 'silu'")


class ConvBN(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation."""

    def __init__(self, c_in: int, c_out: int, *, kernel: int, stride: int, groups: int, act: str):
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
            _activation(act),
        )


class SeparableBlock(nn.Module):
    """Depthwise 3x3 then pointwise 1x1; residual when the shape is unchanged.

    (N, c_in, H, W) -> (N, c_out, H / stride, W / stride)
    """

    def __init__(self, c_in: int, c_out: int, *, stride: int, act: str):
        super().__init__()
        self.depthwise = ConvBN(c_in, c_in, kernel=3, stride=stride, groups=c_in, act=act)
        self.pointwise = ConvBN(c_in, c_out, kernel=1, stride=1, groups=1, act=act)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pointwise(self.depthwise(x))
        return x + y if self.residual else y


class LenslineNet(nn.Module):
    """The inspection classifier. ``forward`` gives logits (N, K); ``features`` the embedding."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        if config.members != 1:
            raise ValueError(
                f"a LenslineNet is one network; members={config.members} is an ensemble"
            )
        if config.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {config.num_classes}")
        if config.width < 4:
            raise ValueError(f"width must be >= 4, got {config.width}")
        self.config = config
        w, act = config.width, config.activation
        stages = [(w, w, 1), (w, 2 * w, 2), (2 * w, 2 * w, 1), (2 * w, 4 * w, 2),
                  (4 * w, 4 * w, 1), (4 * w, 8 * w, 2), (8 * w, 8 * w, 1)]  # fmt: skip
        self.stem = ConvBN(3, w, kernel=3, stride=2, groups=1, act=act)
        self.blocks = nn.Sequential(
            *(SeparableBlock(a, b, stride=s, act=act) for a, b, s in stages)
        )
        if config.pool not in ("avg", "max", "avgmax"):
            raise ValueError(f"unknown pool {config.pool!r}; expected 'avg', 'max' or 'avgmax'")
        self.avg_pool = nn.AdaptiveAvgPool2d(1) if "avg" in config.pool else None
        self.max_pool = nn.AdaptiveMaxPool2d(1) if "max" in config.pool else None
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(8 * w * (2 if config.pool == "avgmax" else 1), config.num_classes)
        self._init_weights()

    @property
    def embedding_dim(self) -> int:
        return self.head.in_features

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        for block in self.blocks:  # residual blocks start as the identity: faster, steadier start
            if isinstance(block, SeparableBlock) and block.residual:
                bn = block.pointwise[1]
                assert isinstance(bn, nn.BatchNorm2d)
                nn.init.zeros_(bn.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embedding: (N, 3, S, S) normalised float -> (N, embedding_dim).

        ``embedding_dim`` is 16 * width for ``pool="avgmax"`` (average then max), else 8 * width.
        """
        x = self.blocks(self.stem(x))
        pooled = [p(x) for p in (self.avg_pool, self.max_pool) if p is not None]
        return torch.flatten(torch.cat(pooled, dim=1) if len(pooled) > 1 else pooled[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits: (N, 3, S, S) normalised float -> (N, num_classes)."""
        return self.head(self.dropout(self.features(x)))

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"classes={c.num_classes}, width={c.width}, image_size={c.image_size}, "
            f"activation={c.activation}, params={_human(count_parameters(self))}"
        )


class LenslineEnsemble(nn.Module):
    """``members`` networks of one architecture; ``forward`` gives the log of their mean softmax
    (N, K), which softmax and argmax read as logits; ``features`` their embeddings concatenated.

    Members are independent networks (different seeds); their mean probability is steadier from
    seed to seed than any one of them (docs/training.md).
    """

    def __init__(self, members: Sequence[LenslineNet]):
        super().__init__()
        nets = list(members)
        if len(nets) < 2:
            raise ValueError(f"an ensemble needs at least 2 members, got {len(nets)}")
        first = nets[0].config
        if any(m.config != first for m in nets):
            raise ValueError("ensemble members must share one architecture (ModelConfig)")
        self.members = nn.ModuleList(nets)
        self.config = ModelConfig(**{**first.to_dict(), "members": len(nets)})

    def networks(self) -> list[LenslineNet]:
        """The members, typed."""
        return [m for m in self.members if isinstance(m, LenslineNet)]

    @property
    def embedding_dim(self) -> int:
        return sum(m.embedding_dim for m in self.networks())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The members' embeddings side by side: (N, 3, S, S) -> (N, members * member dim)."""
        return torch.cat([m.features(x) for m in self.networks()], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """log(mean over members of softmax(logits)): (N, 3, S, S) -> (N, num_classes)."""
        probs = torch.stack([torch.softmax(m(x), dim=1) for m in self.networks()])
        return torch.log(probs.mean(0).clamp_min(1e-12))

    def extra_repr(self) -> str:
        return f"members={len(self.members)}, params={_human(count_parameters(self))}"


def build_network(config: ModelConfig) -> LenslineNet | LenslineEnsemble:
    """A freshly initialised network of ``config``: one :class:`LenslineNet`, or with
    ``members`` > 1 a :class:`LenslineEnsemble` of that many (uses the global torch RNG)."""
    if config.members < 1:
        raise ValueError(f"members must be >= 1, got {config.members}")
    if config.members == 1:
        return LenslineNet(config)
    one = ModelConfig(**{**config.to_dict(), "members": 1})
    return LenslineEnsemble([LenslineNet(one) for _ in range(config.members)])


def build_model(
    num_classes: int,
    *,
    width: int = 16,
    image_size: int = 64,
    dropout: float = 0.2,
    activation: str = "relu6",
    pool: str = "avgmax",
) -> LenslineNet:
    """Build a freshly initialised :class:`LenslineNet` (uses the global torch RNG)."""
    return LenslineNet(ModelConfig(num_classes, width, image_size, dropout, activation, pool))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _human(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1_000_000 else f"{n / 1e3:.1f}k"
