"""Images in memory: normalisation, camera-suited augmentation, a seeded batch loader.

Frames become RGB uint8 (N, S, S, 3) through :class:`training.preprocess.PreprocessSpec` (the
one preprocessing contract). Everything here is torch on whole batches (no per-image Python),
driven by a ``torch.Generator`` so a seed fixes every shuffle and every augmentation.
:func:`to_float` and :func:`normalize` run the contract's step 5 with the same float32
operations as :meth:`PreprocessSpec.normalize` and the spec's ``mean`` / ``std`` (passed in;
the defaults are the spec's defaults), so both give the same bits.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from training.preprocess import MEAN, STD

__all__ = [
    "MEAN",
    "STD",
    "AugmentConfig",
    "ArrayLoader",
    "balance_weights",
    "to_float",
    "normalize",
    "preprocess",
    "augment_batch",
]


@dataclass(frozen=True)
class AugmentConfig:
    """Photometric and geometric jitter a fixed conveyor camera actually sees."""

    brightness: float = 0.0  # gain drawn from [1 - b, 1 + b] (lighting drift, exposure)
    contrast: float = 0.0  # contrast factor from [1 - c, 1 + c] around each image's mean
    translate: float = 0.04  # max shift, fraction of the side (item not perfectly centred)
    blur_p: float = 0.1  # probability of a gaussian blur (focus, motion, dirty lens)
    # blur strength in pixels at the training resolution; much more erases thin scratches
    blur_sigma: tuple[float, float] = (0.3, 0.8)
    noise: float = 0.0  # std of additive gaussian sensor noise, in [0, 1] units
    hflip: bool = True  # mirror left-right (off if defects are handed)


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> float32 (N, 3, H, W) in [0, 1]."""
    return batch.permute(0, 3, 1, 2).float().mul_(torch.tensor(1 / 255, dtype=torch.float32))


def normalize(
    x: torch.Tensor, *, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """float (N, 3, H, W) in [0, 1] -> ``(x - mean) / std`` per channel.

    ``mean``, ``std``: RGB, the spec's (``PreprocessSpec.mean`` / ``.std``; the defaults are
    :class:`training.preprocess.PreprocessSpec`'s).
    """
    m = torch.tensor(tuple(mean), dtype=x.dtype).view(1, 3, 1, 1)
    s = torch.tensor(tuple(std), dtype=x.dtype).view(1, 3, 1, 1)
    return (x - m) / s


def preprocess(
    images: np.ndarray | torch.Tensor, *, mean: Sequence[float] = MEAN, std: Sequence[float] = STD
) -> torch.Tensor:
    """Model input from RGB uint8 (N, H, W, 3): float32 (N, 3, H, W), normalised with the
    spec's ``mean`` / ``std``."""
    batch = (
        torch.from_numpy(np.ascontiguousarray(images)) if isinstance(images, np.ndarray) else images
    )
    if batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3), got {batch.dtype} {tuple(batch.shape)}")
    return normalize(to_float(batch), mean=mean, std=std)


def augment_batch(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Randomly jitter a batch; deterministic for a given generator state.

    Parameters
    ----------
    x
        float32 (N, 3, H, W) in [0, 1] (before :func:`normalize`).
    config
        Augmentation strengths; a zero strength skips that step (and its random draws).
    generator
        Source of all randomness.

    Returns
    -------
    torch.Tensor
        float32 (N, 3, H, W) in [0, 1].
    """
    n = x.shape[0]

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator)

    if config.hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).view(n, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    if config.translate > 0:
        # whole-pixel shifts (nearest, no interpolation smear of thin scratches), edges repeated;
        # affine_grid works in [-1, 1] coordinates, where one pixel is 2 / side.
        h, w = x.shape[-2:]
        max_px = config.translate * min(h, w)
        theta = torch.zeros(n, 2, 3)
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = uniform(-max_px, max_px).round() * 2 / w
        theta[:, 1, 2] = uniform(-max_px, max_px).round() * 2 / h
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="nearest", padding_mode="border", align_corners=False)
    if config.brightness > 0 or config.contrast > 0:
        gain = uniform(1 - config.brightness, 1 + config.brightness).view(n, 1, 1, 1)
        contrast = uniform(1 - config.contrast, 1 + config.contrast).view(n, 1, 1, 1)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (((x - mean) * contrast + mean) * gain).clamp_(0.0, 1.0)
    if config.blur_p > 0:
        x = _random_blur(x, config, generator)
    if config.noise > 0:
        noise = torch.randn(x.shape, generator=generator) * config.noise
        x = (x + noise).clamp_(0.0, 1.0)
    return x


def _random_blur(
    x: torch.Tensor, config: AugmentConfig, generator: torch.Generator
) -> torch.Tensor:
    """Separable 5-tap gaussian blur on a random subset; the rest get an identity kernel."""
    n, c, h, w = x.shape
    chosen = torch.rand(n, generator=generator) < config.blur_p
    lo, hi = config.blur_sigma
    sigma = lo + (hi - lo) * torch.rand(n, generator=generator)
    taps = torch.arange(-2, 3, dtype=x.dtype)
    kernel = torch.exp(-(taps.view(1, 5) ** 2) / (2 * sigma.view(n, 1) ** 2))
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0], dtype=x.dtype)
    kernel = torch.where(chosen.view(n, 1), kernel, identity)  # (n, 5)
    weight = kernel.repeat_interleave(c, dim=0)  # (n * c, 5): one kernel per image channel
    flat = x.reshape(1, n * c, h, w)
    flat = F.conv2d(
        F.pad(flat, (2, 2, 0, 0), mode="replicate"), weight.view(n * c, 1, 1, 5), groups=n * c
    )
    flat = F.conv2d(
        F.pad(flat, (0, 0, 2, 2), mode="replicate"), weight.view(n * c, 1, 5, 1), groups=n * c
    )
    return flat.view(n, c, h, w)


def balance_weights(groups, power: float = 1.0) -> np.ndarray:
    """Sampling weights that give each group (e.g. line condition) an equal share of every
    epoch at ``power`` 1, the natural shares at 0 (``count ** -power`` per item), normalised to
    mean 1. A new condition with a few dozen labelled frames among thousands is otherwise seen
    a few times per epoch and learned slowly and unstably (group-balanced sampling)."""
    g = np.asarray(groups).astype(str)
    _, inverse, counts = np.unique(g, return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** -float(power)
    return w * (len(w) / w.sum()) if len(w) else w


class ArrayLoader:
    """Seeded mini-batches over in-memory uint8 images.

    Iterating yields ``(x, y)``: x float32 (B, 3, S, S) normalised (augmented if ``augment``),
    y int64 (B,). The generator lives as long as the loader, so epoch k's order and jitter
    depend only on ``seed`` and k.

    Parameters
    ----------
    images
        uint8 (N, S, S, 3) RGB.
    labels
        int (N,) class indices.
    batch_size
        Images per batch; the last batch may be smaller.
    shuffle
        Reshuffle every epoch.
    augment
        Jitter settings, or None for clean batches (validation, inference).
    seed
        Seeds the loader's own ``torch.Generator``.
    weights
        Optional float (N,) sampling weights: each epoch then draws N indices with replacement
        in proportion to them (e.g. :func:`balance_weights`), instead of a permutation.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        *,
        batch_size: int,
        shuffle: bool = False,
        augment: AugmentConfig | None = None,
        seed: int = 0,
        weights: np.ndarray | None = None,
        mean: Sequence[float] = MEAN,
        std: Sequence[float] = STD,
    ):
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"images must be uint8 (N, S, S, 3), got {images.dtype} {images.shape}"
            )
        if len(labels) != len(images):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.augment = augment
        self.mean, self.std = tuple(mean), tuple(std)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.weights = None
        if weights is not None:
            w = np.asarray(weights, dtype=np.float64)
            if (
                w.shape != (len(images),)
                or not np.isfinite(w).all()
                or (w < 0).any()
                or w.sum() <= 0
            ):
                raise ValueError(
                    f"weights must be {len(images)} finite non-negative numbers, not all 0"
                )
            self.weights = torch.as_tensor(w)

    def __len__(self) -> int:
        return (len(self.images) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.images)
        if self.weights is not None:
            order = torch.multinomial(self.weights, n, replacement=True, generator=self.generator)
        elif self.shuffle:
            order = torch.randperm(n, generator=self.generator)
        else:
            order = torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = to_float(self.images[idx])
            if self.augment is not None:
                x = augment_batch(x, self.augment, self.generator)
            yield normalize(x, mean=self.mean, std=self.std), self.labels[idx]
