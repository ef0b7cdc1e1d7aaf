"""Batch augmentation against per-sample loop references and closed forms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lightning_nas.data.augment import (
    ImageBatchTransform,
    crop_padded,
    cutout_at,
    flip_where,
    normalize,
    random_crop,
    random_cutout,
    random_flip,
    sample_crop_offsets,
    sample_cutout_centers,
    sample_flip_mask,
    to_float,
)

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))]


def _batch(device: str = "cpu", shape: tuple[int, ...] = (16, 3, 7, 9)) -> torch.Tensor:
    return torch.randint(1, 256, shape, dtype=torch.uint8, device=device)  # no zeros: padding is recognisable


def _generator(seed: int, device: str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


# ---------------------------------------------------------------- crop


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("padding", [1, 4])
def test_crop_equals_slicing_the_padded_image(device: str, padding: int) -> None:
    images = _batch(device)
    top, left = sample_crop_offsets(images, padding, _generator(1, device))
    out = crop_padded(images, padding, top, left)
    height, width = images.shape[-2:]
    for n in range(images.shape[0]):
        padded = F.pad(images[n], (padding,) * 4)
        reference = padded[:, int(top[n]) : int(top[n]) + height, int(left[n]) : int(left[n]) + width]
        assert torch.equal(out[n], reference)


def test_random_crop_is_sample_then_apply_and_covers_all_offsets() -> None:
    images = _batch(shape=(400, 1, 5, 5))
    padding = 2
    out = random_crop(images, padding, _generator(3))
    top, left = sample_crop_offsets(images, padding, _generator(3))
    assert torch.equal(out, crop_padded(images, padding, top, left))
    assert top.min() == 0
    assert top.max() == 2 * padding
    assert left.min() == 0
    assert left.max() == 2 * padding
    assert len(set(zip(top.tolist(), left.tolist(), strict=True))) == (2 * padding + 1) ** 2
    assert not torch.equal(out, random_crop(images, padding, _generator(4)))


def test_every_random_crop_is_some_valid_shift() -> None:
    images = _batch(shape=(32, 2, 6, 6))
    padding = 3
    out = random_crop(images, padding)  # global RNG
    for n in range(images.shape[0]):
        padded = F.pad(images[n], (padding,) * 4)
        placements = [padded[:, y : y + 6, x : x + 6] for y in range(7) for x in range(7)]
        assert any(torch.equal(out[n], crop) for crop in placements)


def test_crop_zero_padding_is_identity_and_known_shift() -> None:
    images = _batch()
    assert random_crop(images, 0) is images
    # Offset (0, 0) into a padding-1 image shifts the content down-right by one pixel, zero-filling the top row.
    shifted = crop_padded(images, 1, torch.zeros(16, dtype=torch.long), torch.zeros(16, dtype=torch.long))
    assert torch.equal(shifted[:, :, 1:, 1:], images[:, :, :-1, :-1])
    assert int(shifted[:, :, 0].abs().sum()) == 0
    assert int(shifted[:, :, :, 0].abs().sum()) == 0


# ---------------------------------------------------------------- flip


@pytest.mark.parametrize("device", DEVICES)
def test_flip_flips_exactly_the_chosen_samples(device: str) -> None:
    images = _batch(device)
    mask = torch.zeros(16, dtype=torch.bool, device=device)
    mask[[0, 3, 4, 15]] = True
    out = flip_where(images, mask)
    for n in range(16):
        expected = images[n].flip(-1) if n in (0, 3, 4, 15) else images[n]
        assert torch.equal(out[n], expected)
    assert torch.equal(
        random_flip(images, generator=_generator(5, device)),
        flip_where(images, sample_flip_mask(images, 0.5, _generator(5, device))),
    )


def test_random_flip_rate_and_extremes() -> None:
    images = _batch(shape=(2000, 1, 2, 3))
    mask = sample_flip_mask(images, 0.5, _generator(0))
    assert 0.45 < mask.float().mean().item() < 0.55
    assert torch.equal(random_flip(images, 0.0), images)
    assert torch.equal(random_flip(images, 1.0), images.flip(-1))


# ---------------------------------------------------------------- cutout


@pytest.mark.parametrize(
    ("length", "center", "zeroed"),
    [
        (4, (5, 5), 16),  # fully inside: rows 3..6, cols 3..6
        (4, (0, 0), 4),  # clipped to rows 0..1, cols 0..1
        (4, (9, 9), 9),  # clipped to rows 7..9, cols 7..9
        (4, (0, 9), 6),  # rows 0..1, cols 7..9
        (3, (5, 5), 9),  # odd length: rows 4..6
        (20, (5, 5), 100),  # larger than the image
        (0, (5, 5), 0),
    ],
)
def test_cutout_zeroes_the_clipped_square(length: int, center: tuple[int, int], zeroed: int) -> None:
    images = torch.ones(2, 3, 10, 10)
    center_y = torch.tensor([center[0], center[0]])
    center_x = torch.tensor([center[1], center[1]])
    out = cutout_at(images, length, center_y, center_x)
    for n in range(2):
        for channel in range(3):
            assert int((out[n, channel] == 0).sum()) == zeroed
    half = length // 2
    y0, x0 = max(center[0] - half, 0), max(center[1] - half, 0)
    y1, x1 = min(center[0] - half + length, 10), min(center[1] - half + length, 10)
    expected = images.clone()
    expected[:, :, y0:y1, x0:x1] = 0
    assert torch.equal(out, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_random_cutout_matches_loop_reference(device: str) -> None:
    images = torch.rand(24, 3, 12, 12, device=device) + 0.5  # strictly positive
    length = 6
    out = random_cutout(images, length, _generator(7, device))
    center_y, center_x = sample_cutout_centers(images, _generator(7, device))
    assert int(center_y.min()) >= 0
    assert int(center_y.max()) < 12
    for n in range(24):
        expected = images[n].clone()
        y, x = int(center_y[n]), int(center_x[n])
        expected[:, max(y - 3, 0) : min(y + 3, 12), max(x - 3, 0) : min(x + 3, 12)] = 0
        assert torch.equal(out[n], expected)
    assert random_cutout(images, 0) is images


# ---------------------------------------------------------------- scaling and normalisation


def test_to_float_and_normalize_closed_form() -> None:
    images = _batch()
    scaled = to_float(images)
    assert scaled.dtype == torch.float32
    assert torch.allclose(scaled * 255, images.double().float())
    mean, std = (0.1, 0.5, 0.9), (0.2, 0.3, 0.4)
    out = normalize(scaled, mean, std)
    for channel in range(3):
        expected = (images[:, channel].double() / 255 - mean[channel]) / std[channel]
        assert torch.allclose(out[:, channel].double(), expected, atol=1e-6)
    doubles = scaled.double()
    assert normalize(doubles, mean, std).dtype == torch.float64
    assert to_float(doubles) is doubles


def test_normalize_and_to_float_errors() -> None:
    with pytest.raises(ValueError, match="3 entries"):
        normalize(torch.zeros(1, 3, 2, 2), (0.5,), (0.5,))
    with pytest.raises(ValueError, match="positive"):
        normalize(torch.zeros(1, 1, 2, 2), (0.5,), (0.0,))
    with pytest.raises(TypeError, match="int32"):
        to_float(torch.zeros(2, dtype=torch.int32))
    with pytest.raises(ValueError, match=r"\[N, C, H, W\]"):
        crop_padded(torch.zeros(3, 4, 4), 1, torch.zeros(3, dtype=torch.long), torch.zeros(3, dtype=torch.long))


# ---------------------------------------------------------------- layout, dtype, device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float16])
def test_ops_keep_dtype_device_shape_and_channels_last(device: str, dtype: torch.dtype) -> None:
    images = _batch(device).to(dtype)
    channels_last = images.contiguous(memory_format=torch.channels_last)
    ops = {
        "crop": lambda x: random_crop(x, 2, _generator(0, device)),
        "flip": lambda x: random_flip(x, generator=_generator(0, device)),
        "cutout": lambda x: random_cutout(x, 3, _generator(0, device)),
        "normalize": lambda x: normalize(x, (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)) if x.is_floating_point() else x,
    }
    for name, op in ops.items():
        plain, last = op(images), op(channels_last)
        for out in (plain, last):
            assert (out.dtype, out.device, out.shape) == (dtype, images.device, images.shape), name
        assert last.is_contiguous(memory_format=torch.channels_last), name
        assert torch.equal(plain, last), name


def test_cpu_generator_drives_a_batch_on_another_device_type() -> None:
    # Parameters are drawn on the generator's device then moved: the same CPU generator gives the same result
    # whatever the batch's device, here checked on CPU and, if present, CUDA.
    images = _batch()
    out = random_crop(images, 2, _generator(9))
    if torch.cuda.is_available():
        assert torch.equal(random_crop(images.cuda(), 2, _generator(9)).cpu(), out)
    assert torch.equal(out, random_crop(images, 2, _generator(9)))


def test_transform_pipeline() -> None:
    images = _batch(shape=(8, 3, 6, 6))
    transform = ImageBatchTransform(mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2), crop_padding=2, flip=True, cutout=2)
    plain = transform(images, augment=False)
    assert torch.allclose(plain, normalize(to_float(images), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)))
    augmented = transform(images, augment=True, generator=_generator(0))
    assert augmented.dtype == torch.float32
    assert augmented.shape == images.shape
    assert torch.equal(augmented, transform(images, augment=True, generator=_generator(0)))
    # Same stream by hand: crop, flip, scale + normalise, cutout.
    generator = _generator(0)
    expected = random_flip(random_crop(images, 2, generator), generator=generator)
    expected = random_cutout(normalize(to_float(expected), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2)), 2, generator)
    assert torch.equal(augmented, expected)
    last = transform(images.contiguous(memory_format=torch.channels_last), augment=True, generator=_generator(0))
    assert last.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(last, augmented)
    with pytest.raises(ValueError, match="one entry per channel"):
        ImageBatchTransform(mean=(0.5,), std=(0.2, 0.2))
