"""The elastic MobileNetV3 space (issue 4): exported subnets compute what the supernet computes, analytic costs
equal the exported model's, channel sorting keeps the function, and bad configs are named."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from lightning_nas.arch import Choice
from lightning_nas.sampling import sample_arch, step_generator
from lightning_nas.spaces import ElasticMobileNetV3, elastic_space_from_config
from tests.tiny import tiny_elastic_space


def _tiny(**kwargs: Any) -> ElasticMobileNetV3:
    return tiny_elastic_space(**{"num_classes": 5, **kwargs})


def _randomise(space: nn.Module) -> None:
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, tensor in [*space.named_parameters(), *space.named_buffers()]:
            if name.endswith("running_var"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            elif name.endswith(("running_mean", "bias")) or ".transforms." in name or name.endswith("bn.weight"):
                tensor.add_(0.2 * torch.randn(tensor.shape, generator=generator))


def _random_archs(space: ElasticMobileNetV3, count: int) -> list[dict[str, int | str]]:
    return [space.sample_min_subnet(), space.sample_max_subnet()] + [
        sample_arch(space.choices(), step_generator(0, step)) for step in range(count)
    ]


def test_exported_subnet_logits_equal_the_supernet_logits() -> None:
    space = _tiny()
    _randomise(space)
    space.eval()
    x = torch.randn(4, 1, 16, 16)
    for arch in _random_archs(space, 6):
        space.activate(arch)
        expected = space(x)
        static = space.export_subnet(arch)
        assert not static.training
        assert not any(type(m).__name__.startswith("Elastic") for m in static.modules())
        torch.testing.assert_close(static(x), expected, atol=1e-5, rtol=1e-5)
        # the exported weights are copies: changing the supernet does not change the subnet
        with torch.no_grad():
            space.classifier.weight.add_(1.0)
        torch.testing.assert_close(static(x), expected, atol=1e-5, rtol=1e-5)


def test_imagenet_preset_largest_subnet_exports_exactly() -> None:
    space = ElasticMobileNetV3(num_classes=10, resolutions=(32, 64)).eval()
    _randomise(space)
    arch = space.sample_max_subnet()
    space.activate(arch)
    x = torch.randn(2, 3, 64, 64)
    torch.testing.assert_close(space.export_subnet(arch)(x), space(x), atol=1e-5, rtol=1e-5)
    assert [len(stage) for stage in space.stages] == [4, 4, 4, 4, 4]


def test_analytic_params_equal_the_exported_model() -> None:
    space = _tiny(num_classes=7)
    for arch in _random_archs(space, 8):
        exported = space.export_subnet(arch)
        assert space.count_params(arch) == sum(p.numel() for p in exported.parameters())


def test_analytic_params_of_the_imagenet_space() -> None:
    space = ElasticMobileNetV3()
    for arch in _random_archs(space, 2):
        assert space.count_params(arch) == sum(p.numel() for p in space.export_subnet(arch).parameters())


def test_analytic_flops_equal_torch_flop_counter() -> None:
    """torch's FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions and matrix products."""
    space = _tiny()
    for arch in _random_archs(space, 4):
        exported = space.export_subnet(arch).eval()
        resolution = int(arch["resolution"])
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            exported(torch.randn(1, 1, resolution, resolution))
        assert 2 * space.count_flops(arch) == counter.get_total_flops()


def test_channel_sorting_keeps_the_full_network_function() -> None:
    space = _tiny()
    _randomise(space)
    space.eval()
    x = torch.randn(3, 1, 16, 16)
    before = space(x)
    space.reorganize_channels()
    torch.testing.assert_close(space(x), before, atol=1e-5, rtol=1e-5)
    space.reorganize_channels(keep_within=(3, 4))
    torch.testing.assert_close(space(x), before, atol=1e-5, rtol=1e-5)


def test_depth_keeps_the_first_blocks_and_resolution_resizes() -> None:
    space = _tiny().eval()
    arch = space.sample_max_subnet()
    arch["stage1/depth"] = 2
    arch["stage1/block3/kernel"] = 3  # a skipped block's choice does not change the subnet
    same = dict(arch, **{"stage1/block3/kernel": 7})
    x = torch.randn(2, 1, 16, 16)
    space.activate(arch)
    first = space(x)
    space.activate(same)
    torch.testing.assert_close(space(x), first)
    assert len(space.export_subnet(arch).blocks) == 1 + 4 + 2 + 4 + 4 + 4
    space.activate(dict(arch, resolution=8))
    small = nn.functional.interpolate(x, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(space(x), space(small))


def test_sampling_respects_limits_and_orders() -> None:
    space = _tiny()
    limits = {"kernel": (7,), "depth": (3, 4)}
    for step in range(5):
        arch = space.sample_subnet(step_generator(0, step), limits)
        assert all(arch[n] == 7 for n in arch if n.endswith("/kernel"))
        assert all(arch[n] in (3, 4) for n in arch if n.endswith("/depth"))
    smallest, largest = space.sample_min_subnet(), space.sample_max_subnet()
    assert space.count_params(smallest) < space.count_params(largest)
    assert space.count_flops(smallest) < space.count_flops(largest)
    assert space.sample_min_subnet(limits)["stage0/depth"] == 3


def test_config_rebuilds_the_space() -> None:
    space = _tiny()
    rebuilt = elastic_space_from_config(space.space_path(), space.config())
    assert rebuilt.choices() == space.choices()
    rebuilt.load_state_dict(space.state_dict())
    with pytest.raises(ValueError, match="is not an ElasticSpace"):
        elastic_space_from_config("torch.nn.Linear", {})
    with pytest.raises(ValueError, match="names the class 'no.such.Space' from a module that is not imported"):
        elastic_space_from_config("no.such.Space", {})


def test_bad_configs_name_the_key_and_the_allowed_values() -> None:
    space = _tiny()
    arch = space.sample_max_subnet()
    with pytest.raises(ValueError, match=r"choice 'stage2/block1/kernel' got 9; valid values: 3, 5, 7"):
        space.activate(dict(arch, **{"stage2/block1/kernel": 9}))
    with pytest.raises(ValueError, match=r"choice 'stage0/depth' got 1; valid values: 2, 3, 4"):
        space.export_subnet(dict(arch, **{"stage0/depth": 1}))
    with pytest.raises(ValueError, match=r"choice 'stage4/block0/expand' got 5; valid values: 3, 4, 6"):
        space.count_params(dict(arch, **{"stage4/block0/expand": 5}))
    missing = {k: v for k, v in arch.items() if k != "stage3/block2/expand"}
    with pytest.raises(ValueError, match=r"missing choices \['stage3/block2/expand'\]"):
        space.activate(missing)
    with pytest.raises(ValueError, match=r"unknown dimension 'width'; this space has: resolution, depth, kernel"):
        space.sample_max_subnet({"width": (1,)})
    with pytest.raises(ValueError, match=r"dimension 'kernel' got \[9\]; valid values: 3, 5, 7"):
        space.restrict({"kernel": (9,)})
    assert isinstance(space.choices()[0], Choice)


def test_resolutions_the_stem_cannot_take_are_refused() -> None:
    with pytest.raises(ValueError, match=r"resolution 16 cannot be taken by the stem of preset 'imagenet'.*at least"):
        ElasticMobileNetV3(resolutions=(16, 224))
    with pytest.raises(ValueError, match=r"resolution 4 cannot be taken .* total stride 8"):
        _tiny(resolutions=(4, 16))
    with pytest.raises(ValueError, match=r"resolution 225 cannot be taken .* multiples of the stem stride 2"):
        ElasticMobileNetV3(resolutions=(225,))
    with pytest.raises(ValueError, match=r"expand_ratios must be a non-empty list of positive integers"):
        _tiny(expand_ratios=())
    with pytest.raises(ValueError, match=r"widths must be 9 positive channel counts"):
        _tiny(widths=(8, 8))
    with pytest.raises(ValueError, match=r"preset must be one of 'imagenet', 'cifar', got 'mnist'"):
        _tiny(preset="mnist")
    with pytest.raises(ValueError, match=r"expected images \[B, 1, H, W\], got shape \(2, 3, 16, 16\)"):
        _tiny()(torch.randn(2, 3, 16, 16))
