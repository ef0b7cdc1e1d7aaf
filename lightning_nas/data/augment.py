"""Batch augmentation in plain torch, run on whole batches on the batch's device.

Each random operation is split into a ``sample_*`` function that draws the per-sample parameters and a
deterministic function that applies them; ``random_*`` is exactly ``sample_*`` followed by the apply step, so a
generator seeded the same way reproduces the parameters. All randomness comes from an optional
``torch.Generator``; parameters are drawn on the generator's device (the batch's device without one) and then
moved to the batch's device, so a CPU generator also drives a GPU batch.

The order used by :class:`ImageBatchTransform` follows the DARTS training pipeline: random crop with zero padding
and horizontal flip on the raw image, then scaling to ``[0, 1]`` and normalisation, then cutout (which therefore
writes zeros in normalised space, as in DeVries & Taylor 2017, https://arxiv.org/abs/1708.04552).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ImageBatchTransform",
    "crop_padded",
    "cutout_at",
    "flip_where",
    "normalize",
    "random_crop",
    "random_cutout",
    "random_flip",
    "sample_crop_offsets",
    "sample_cutout_centers",
    "sample_flip_mask",
    "to_float",
]


def _like(output: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Give ``output`` the memory format of ``reference`` (channels_last stays channels_last)."""
    if reference.ndim != 4 or reference.is_contiguous():
        return output
    if reference.is_contiguous(memory_format=torch.channels_last):
        return output.contiguous(memory_format=torch.channels_last)
    return output


def _check_batch(images: torch.Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"expected a batch of images [N, C, H, W], got shape {tuple(images.shape)}")


def _sample_device(images: torch.Tensor, generator: torch.Generator | None) -> torch.device:
    return generator.device if generator is not None else images.device


def to_float(images: torch.Tensor) -> torch.Tensor:
    """Scale ``uint8`` images to ``float32`` in ``[0, 1]``; floating-point images are returned unchanged.

    Args:
        images: Images of any shape.

    Returns:
        ``images / 255`` as ``float32`` for ``uint8`` input, keeping shape, device and memory format.

    Raises:
        TypeError: If ``images`` is neither ``uint8`` nor floating point.

    Example:
        >>> to_float(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([0.0000, 0.2000, 1.0000])
    """
    if images.is_floating_point():
        return images
    if images.dtype != torch.uint8:
        raise TypeError(f"expected uint8 or floating-point images, got {images.dtype}")
    return images.float().div_(255.0)


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """Normalise each channel: ``(images[:, c] - mean[c]) / std[c]``.

    Args:
        images: Floating-point batch ``[N, C, H, W]``.
        mean: ``C`` channel means.
        std: ``C`` positive channel standard deviations.

    Returns:
        The normalised batch, same dtype, device, shape and memory format.

    Raises:
        ValueError: If ``mean``/``std`` do not have ``C`` entries or a ``std`` is not positive.

    Example:
        >>> normalize(torch.ones(1, 2, 1, 1), mean=(0.5, 0.0), std=(0.25, 2.0)).flatten()
        tensor([2.0000, 0.5000])
    """
    _check_batch(images)
    channels = images.shape[1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} need {channels} entries, one per channel")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {tuple(std)}")
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(1, channels, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(1, channels, 1, 1)
    return _like((images - mean_t) / std_t, images)


def sample_crop_offsets(
    images: torch.Tensor, padding: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a crop position per sample, uniform over the ``(2 * padding + 1) ** 2`` placements.

    Args:
        images: The batch ``[N, C, H, W]`` (only its size and device are used).
        padding: Zero padding on every side.
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        ``(top, left)``: ``int64`` tensors ``[N]`` in ``[0, 2 * padding]`` on ``images.device``.
    """
    device = _sample_device(images, generator)
    offsets = torch.randint(0, 2 * padding + 1, (2, images.shape[0]), generator=generator, device=device)
    offsets = offsets.to(images.device)
    return offsets[0], offsets[1]


def crop_padded(images: torch.Tensor, padding: int, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Zero-pad each image by ``padding`` and cut out an ``H x W`` window at ``(top[n], left[n])``.

    Output sample ``n`` equals ``pad(images)[n, :, top[n] : top[n] + H, left[n] : left[n] + W]``, computed for the
    whole batch with one gather (no loop over samples).

    Args:
        images: Batch ``[N, C, H, W]`` of any dtype.
        padding: Zero padding on every side.
        top: ``[N]`` row offsets into the padded image, in ``[0, 2 * padding]``.
        left: ``[N]`` column offsets into the padded image, in ``[0, 2 * padding]``.

    Returns:
        The cropped batch, same dtype, device, shape and memory format.

    Raises:
        ValueError: If ``padding`` is negative.

    Example:
        >>> image = torch.arange(1, 5).view(1, 1, 2, 2)
        >>> crop_padded(image, 1, top=torch.tensor([0]), left=torch.tensor([2])).view(2, 2)
        tensor([[0, 0],
                [2, 0]])
    """
    _check_batch(images)
    if padding < 0:
        raise ValueError(f"padding must be non-negative, got {padding}")
    batch, channels, height, width = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = top.view(batch, 1, 1, 1) + torch.arange(height, device=device).view(1, 1, height, 1)
    cols = left.view(batch, 1, 1, 1) + torch.arange(width, device=device).view(1, 1, 1, width)
    samples = torch.arange(batch, device=device).view(batch, 1, 1, 1)
    planes = torch.arange(channels, device=device).view(1, channels, 1, 1)
    return _like(padded[samples, planes, rows, cols], images)


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop with zero padding, an independent position per sample (``sample_crop_offsets`` + ``crop_padded``).

    Args:
        images: Batch ``[N, C, H, W]``.
        padding: Zero padding on every side; ``0`` returns ``images``.
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        The augmented batch, same dtype, device, shape and memory format.
    """
    if padding == 0:
        return images
    top, left = sample_crop_offsets(images, padding, generator)
    return crop_padded(images, padding, top, left)


def sample_flip_mask(
    images: torch.Tensor, probability: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Choose the samples to flip, each independently with ``probability``.

    Args:
        images: The batch ``[N, C, H, W]`` (only its size and device are used).
        probability: Chance that a sample is flipped.
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        Boolean ``[N]`` on ``images.device``.
    """
    device = _sample_device(images, generator)
    draws = torch.rand(images.shape[0], generator=generator, device=device)
    return (draws < probability).to(images.device)


def flip_where(images: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mirror the samples where ``mask`` is true left-to-right; leave the others as they are.

    Args:
        images: Batch ``[N, C, H, W]``.
        mask: Boolean ``[N]``.

    Returns:
        The batch, same dtype, device, shape and memory format.

    Example:
        >>> images = torch.tensor([[1, 2], [3, 4]]).view(2, 1, 1, 2)
        >>> flip_where(images, torch.tensor([True, False])).view(2, 2)
        tensor([[2, 1],
                [3, 4]])
    """
    _check_batch(images)
    return _like(torch.where(mask.view(-1, 1, 1, 1), images.flip(-1), images), images)


def random_flip(
    images: torch.Tensor, probability: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random horizontal flip per sample (``sample_flip_mask`` + ``flip_where``).

    Args:
        images: Batch ``[N, C, H, W]``.
        probability: Chance that a sample is flipped.
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        The augmented batch, same dtype, device, shape and memory format.
    """
    return flip_where(images, sample_flip_mask(images, probability, generator))


def sample_cutout_centers(
    images: torch.Tensor, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw a cutout centre per sample, uniform over the image's pixels.

    Args:
        images: The batch ``[N, C, H, W]`` (only its size and device are used).
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        ``(center_y, center_x)``: ``int64`` tensors ``[N]`` in ``[0, H)`` and ``[0, W)`` on ``images.device``.
    """
    _check_batch(images)
    device = _sample_device(images, generator)
    batch, _, height, width = images.shape
    center_y = torch.randint(0, height, (batch,), generator=generator, device=device)
    center_x = torch.randint(0, width, (batch,), generator=generator, device=device)
    return center_y.to(images.device), center_x.to(images.device)


def cutout_at(images: torch.Tensor, length: int, center_y: torch.Tensor, center_x: torch.Tensor) -> torch.Tensor:
    """Zero a ``length x length`` square per sample, clipped at the borders.

    Sample ``n`` gets zeros in rows ``[center_y[n] - length // 2, center_y[n] - length // 2 + length)`` and the
    same columns around ``center_x[n]``, both clipped to the image, in every channel. For even ``length`` this is
    the square of the DARTS retraining code
    (https://github.com/quark0/darts/blob/8876e793763398e3ee62ac1823fa0a3c14e8c2c5/cnn/utils.py#L40-L60), which
    zeroes ``length - 1`` rows for odd ``length``; here the side is always ``length``.

    Args:
        images: Batch ``[N, C, H, W]``.
        length: Side of the square; ``0`` changes nothing.
        center_y: ``[N]`` centre rows.
        center_x: ``[N]`` centre columns.

    Returns:
        The batch, same dtype, device, shape and memory format.

    Raises:
        ValueError: If ``length`` is negative.

    Example:
        >>> cutout_at(torch.ones(1, 1, 3, 4), 2, center_y=torch.tensor([0]), center_x=torch.tensor([3])).view(3, 4)
        tensor([[1., 1., 0., 0.],
                [1., 1., 1., 1.],
                [1., 1., 1., 1.]])
    """
    _check_batch(images)
    if length < 0:
        raise ValueError(f"cutout length must be non-negative, got {length}")
    _, _, height, width = images.shape
    device = images.device
    top = center_y.view(-1, 1) - length // 2
    left = center_x.view(-1, 1) - length // 2
    rows = torch.arange(height, device=device).view(1, height)
    cols = torch.arange(width, device=device).view(1, width)
    inside_rows = (rows >= top) & (rows < top + length)
    inside_cols = (cols >= left) & (cols < left + length)
    mask = inside_rows.view(-1, 1, height, 1) & inside_cols.view(-1, 1, 1, width)
    return _like(images.masked_fill(mask, 0), images)


def random_cutout(images: torch.Tensor, length: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Cutout with a random centre per sample (``sample_cutout_centers`` + ``cutout_at``).

    Args:
        images: Batch ``[N, C, H, W]``.
        length: Side of the square; ``0`` returns ``images``.
        generator: Source of randomness; the global RNG if ``None``.

    Returns:
        The augmented batch, same dtype, device, shape and memory format.
    """
    if length == 0:
        return images
    center_y, center_x = sample_cutout_centers(images, generator)
    return cutout_at(images, length, center_y, center_x)


class ImageBatchTransform(nn.Module):
    """Turn a ``uint8`` batch into a normalised float batch, augmenting it when asked.

    With ``augment=True`` the steps are: random crop (``crop_padding``), random horizontal flip (``flip``),
    scale to ``[0, 1]``, normalise, cutout (``cutout``). With ``augment=False`` only scaling and normalisation run.

    Args:
        mean: Per-channel mean of the ``[0, 1]``-scaled data.
        std: Per-channel standard deviation of the ``[0, 1]``-scaled data.
        crop_padding: Zero padding of the random crop; ``0`` disables cropping.
        flip: Whether to flip half of the samples horizontally.
        cutout: Side of the cutout square; ``0`` disables cutout.

    Raises:
        ValueError: If ``mean`` and ``std`` differ in length or a size is negative.

    Example:
        >>> transform = ImageBatchTransform(mean=(0.5,), std=(0.5,), crop_padding=2, flip=True, cutout=4)
        >>> batch = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8)
        >>> out = transform(batch, augment=True, generator=torch.Generator().manual_seed(0))
        >>> out.dtype, tuple(out.shape), bool(out.min() >= -1) and bool(out.max() <= 1)
        (torch.float32, (8, 1, 16, 16), True)
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        crop_padding: int = 0,
        flip: bool = False,
        cutout: int = 0,
    ) -> None:
        super().__init__()
        if len(mean) != len(std):
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} must have one entry per channel")
        if crop_padding < 0 or cutout < 0:
            raise ValueError(f"crop_padding and cutout must be non-negative, got {crop_padding} and {cutout}")
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)
        self.crop_padding = crop_padding
        self.flip = flip
        self.cutout = cutout

    def forward(
        self, images: torch.Tensor, augment: bool = True, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Convert (and with ``augment``, augment) a batch.

        Args:
            images: ``uint8`` (or already ``[0, 1]`` float) batch ``[N, C, H, W]``.
            augment: Apply crop, flip and cutout; ``False`` for evaluation.
            generator: Source of randomness; the global RNG if ``None``.

        Returns:
            A normalised float batch of the same shape, device and memory format.
        """
        if augment:
            images = random_crop(images, self.crop_padding, generator)
            if self.flip:
                images = random_flip(images, generator=generator)
        images = normalize(to_float(images), self.mean, self.std)
        if augment:
            images = random_cutout(images, self.cutout, generator)
        return images

    def extra_repr(self) -> str:
        settings = f"crop_padding={self.crop_padding}, flip={self.flip}, cutout={self.cutout}"
        return f"mean={self.mean}, std={self.std}, {settings}"
