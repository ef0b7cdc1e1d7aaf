"""Params/FLOPs against closed forms, the latency table against measured end-to-end latency, and bad tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_nas.sampling import sample_arch
from lightning_nas.search import (
    ConstraintError,
    CostModel,
    LatencyTable,
    RandomSearch,
    build_latency_table,
    count_cost,
    measure_latency,
)
from lightning_nas.search.latency import trace_blocks
from lightning_nas.spaces import DartsCellSpace, ElasticMobileNetV3
from tests.tiny import tiny_darts_space


def test_flops_of_a_one_conv_path_match_the_closed_form() -> None:
    space = DartsCellSpace(in_channels=1, num_classes=10, channels=4, layers=1, steps=1, stem_multiplier=1)
    base = {c.name: c.candidates[0] for c in space.choices()}
    pool = count_cost(
        space, {**base, "reduce/node2/op0": "max_pool_3x3", "reduce/node2/op1": "max_pool_3x3"}, image_size=8
    )
    conv = count_cost(
        space, {**base, "reduce/node2/op0": "dil_conv_3x3", "reduce/node2/op1": "max_pool_3x3"}, image_size=8
    )
    # one reduction cell (layers=1) with 8 channels: dil_conv_3x3 = depthwise 3x3 + pointwise 1x1 on a 4x4 output
    channels, outputs = 8, 4 * 4
    assert conv.flops - pool.flops == outputs * channels * (9 + channels)
    assert conv.params - pool.params == channels * 9 + channels * channels


def test_an_impossible_params_constraint_names_the_smallest_value() -> None:
    space = DartsCellSpace(in_channels=1, channels=4, layers=2, steps=1)
    costs = CostModel(space, image_size=8)
    smallest = min(costs.params(sample_arch(space.choices(), torch.Generator().manual_seed(k))) for k in range(3))
    strategy = RandomSearch(space.choices(), constraints=[costs.constraint("params", 10)], max_tries=30)
    with pytest.raises(ConstraintError, match=r"params <= 10 \(smallest found: \d+\)") as error:
        strategy.ask()
    assert float(str(error.value).rsplit(": ", 1)[1].rstrip(")")) <= smallest * 10  # a real measured count
    with pytest.raises(ValueError, match="unknown cost 'latency'; valid costs: params, flops"):
        costs.constraint("latency", 1.0)


# A measurement of this machine: another test process sharing the cores skews it, so it runs with the slow
# tests (alone, in .ci/run's `pytest -m slow -n 0`), not in the parallel default run.
@pytest.mark.slow
def test_latency_table_predicts_measured_latency_within_15_percent() -> None:
    """Predictions vs end-to-end latency measured in the same timing rounds as the blocks (so both see the same
    load on this shared machine); the CPU clock ignores time the OS gives to other processes."""
    torch.set_num_threads(1)
    space = tiny_darts_space(num_classes=10, channels=32, layers=4)
    table = build_latency_table(
        space, (4, 1, 28, 28), warmup=3, repeats=41, patience=30, calibration_archs=7, validation_archs=4, clock="cpu"
    )
    predict = table.predictor(space)
    print(f"{len(table.entries)} blocks, overhead {table.overhead_ms:.2f} ms")
    for check in table.validation:
        predicted, measured = predict(check["arch"]), check["measured_ms"]
        later = measure_latency(space, [check["arch"]], (4, 1, 28, 28), repeats=15, clock="cpu")[0]
        print(
            f"predicted {predicted:.2f} ms, measured {measured:.2f} ms ({100 * (predicted / measured - 1):+.1f}%), "
            f"measured again after the build {later:.2f} ms"
        )
        assert predicted == pytest.approx(check["predicted_ms"])
        assert abs(predicted - measured) <= 0.15 * measured


# A measurement of this machine: another test process sharing the cores skews it, so it runs with the slow
# tests (alone, in .ci/run's `pytest -m slow -n 0`), not in the parallel default run.
@pytest.mark.slow
def test_elastic_blocks_are_timed_per_setting_and_predict_measured_latency_within_15_percent() -> None:
    """An elastic block is one module whatever its kernel and expand ratio: each setting must be its own entry,
    timed with that setting active, or every subnet would be predicted with whichever setting was timed."""
    torch.set_num_threads(1)
    space = ElasticMobileNetV3(
        in_channels=1,
        num_classes=10,
        preset="cifar",
        kernel_sizes=(3, 7),
        expand_ratios=(1, 6),
        depths=(1, 2),
        resolutions=(32,),
        widths=(16, 16, 24, 32, 48, 64, 64, 128, 128),
    ).eval()
    small = space.sample_min_subnet()
    large = {**small, "stage1/block0/kernel": 7, "stage1/block0/expand": 6}
    keys = [{b.key for b in trace_blocks(space, arch, (2, 1, 32, 32))} for arch in (small, large)]
    assert len(keys[0] ^ keys[1]) == 2  # the same module, two settings: two different blocks

    table = build_latency_table(
        space, (2, 1, 32, 32), warmup=3, repeats=41, patience=30, calibration_archs=7, validation_archs=4, clock="cpu"
    )
    predict = table.predictor(space)
    [ms_small, ms_large] = measure_latency(space, [small, large], (2, 1, 32, 32), repeats=15, clock="cpu")
    print(
        f"{len(table.entries)} blocks; one block at k3/e1 vs k7/e6: predicted {predict(small):.2f} vs "
        f"{predict(large):.2f} ms, measured {ms_small:.2f} vs {ms_large:.2f} ms"
    )
    assert predict(large) - predict(small) == pytest.approx(
        table.entries[next(iter(keys[1] - keys[0]))] - table.entries[next(iter(keys[0] - keys[1]))]
    )
    assert predict(large) > predict(small)
    for check in table.validation:
        predicted, measured = check["predicted_ms"], check["measured_ms"]
        print(f"predicted {predicted:.2f} ms, measured {measured:.2f} ms ({100 * (predicted / measured - 1):+.1f}%)")
        assert abs(predicted - measured) <= 0.15 * measured


def test_bad_tables_are_refused_with_clear_messages(tmp_path: Path) -> None:
    space = DartsCellSpace(in_channels=1, channels=4, layers=2, steps=1)
    table = build_latency_table(space, (1, 1, 8, 8), warmup=0, repeats=1, patience=5, calibration_archs=1)
    path = table.save(tmp_path / "lut.json")
    assert LatencyTable.load(path).entries == table.entries

    other = DartsCellSpace(in_channels=1, channels=8, layers=2, steps=1)
    with pytest.raises(ValueError, match=r"built on space .*DartsCellSpace \(fingerprint \w+\), not on this"):
        LatencyTable.load(path).predictor(other)

    payload = json.loads(path.read_text())
    for change, message in [
        ({"entries": {}}, "has no entries"),
        ({"entries": {"stem[]": -1.0}}, "not latencies >= 0"),
        ({"format": "something else"}, "is not a latency table"),
        ({"space": "DartsCellSpace"}, "'space' must hold 'class' and 'fingerprint'"),
    ]:
        (tmp_path / "bad.json").write_text(json.dumps({**payload, **change}))
        with pytest.raises(ValueError, match=message):
            LatencyTable.load(tmp_path / "bad.json")
    del payload["input_shape"]
    (tmp_path / "bad.json").write_text(json.dumps(payload))
    with pytest.raises(ValueError, match=r"lacks the fields \['input_shape'\]"):
        LatencyTable.load(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text("")
    with pytest.raises(ValueError, match="is not valid JSON"):
        LatencyTable.load(tmp_path / "empty.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        LatencyTable.load(tmp_path / "absent.json")

    partial = LatencyTable.from_json({**payload, "input_shape": [1, 1, 8, 8], "entries": {"stem[]": 1.0}})
    with pytest.raises(KeyError, match="is not in the latency table"):
        partial.predictor(space)(sample_arch(space.choices(), torch.Generator()))
