"""Encodings and learned predictors: closed-form encodings, fits on a known function, and refusals."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from lightning_nas.arch import Choice
from lightning_nas.predictors import (
    PREDICTORS,
    CellAdjacencyEncoding,
    NotFittedError,
    OneHotEncoding,
    PathEncoding,
    Predictor,
)
from lightning_nas.sampling import sample_arch
from lightning_nas.spaces import DartsCellSpace, NasBench201Format

FORMAT = NasBench201Format()
TREES = ("random_forest", "lightgbm", "xgboost")
CELLS = [dict(zip([c.name for c in FORMAT.choices()], ops)) for ops in itertools.product(FORMAT.ops, repeat=6)]


def test_path_encoding_counts_the_paths_of_a_cell() -> None:
    encoding = PathEncoding(FORMAT)
    full = FORMAT.parse(
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    )
    assert encoding.encode(full).sum() == 4  # every one of the 4 paths is open, each a single op sequence
    cut = FORMAT.parse("|none~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|")
    assert encoding.encode(cut).sum() == 2  # 1<-0 is none: only 0->3 and 0->2->3 remain
    # the encoding sees the cell only through its paths: two cells with the same open paths encode alike
    matrix = encoding.encode_many(CELLS[:2000])
    assert matrix.shape == (2000, 4 + 2 * 16 + 64)
    assert set(np.unique(matrix)) <= {0.0, 1.0}


def test_one_hot_has_one_bit_per_choice() -> None:
    encoding = OneHotEncoding(FORMAT.choices())
    matrix = encoding.encode_many(CELLS[:50])
    assert matrix.shape == (50, 30)
    assert (matrix.reshape(50, 6, 5).sum(-1) == 1).all()


def test_cell_adjacency_counts_each_nodes_input_op_pairs_and_ignores_their_order() -> None:
    space = DartsCellSpace(in_channels=1, channels=4, layers=2)  # 4 nodes per cell: 2, 3, 4, 5 inputs; 7 ops
    encoding = CellAdjacencyEncoding(space.choices())
    assert encoding.width == 2 * (2 + 3 + 4 + 5) * 7
    ops = space.choices()[0].candidates
    generator = torch.Generator().manual_seed(0)
    for _ in range(20):
        arch = sample_arch(space.choices(), generator)
        vector = encoding.encode(arch)
        assert vector.sum() == 2 * 4 * 2  # two (input, op) pairs per node, 4 nodes, 2 cells
        # the entry of a pair is where the closed-form offset puts it
        offset = sum(n * 7 for n in (2, 3, 4)) + arch["normal/node5/in1"] * 7 + ops.index(arch["normal/node5/op1"])
        assert vector[offset] >= 1
        swapped = {**arch}
        for a, b in (("op0", "op1"), ("in0", "in1")):
            swapped[f"reduce/node3/{a}"], swapped[f"reduce/node3/{b}"] = (
                arch[f"reduce/node3/{b}"],
                arch[f"reduce/node3/{a}"],
            )
        assert (encoding.encode(swapped) == vector).all()  # the node sums its pairs: the same cell
    with pytest.raises(ValueError, match="needs a DARTS-style cell space .* choice '1<-0' is neither"):
        CellAdjacencyEncoding(FORMAT.choices())
    with pytest.raises(ValueError, match="cell-adjacency encoding: architecture is not of this space"):
        encoding.encode(CELLS[0])


def _target(arch: dict) -> float:
    # a known function of the cell: two points per 3x3 convolution, one per 1x1, minus one per none
    ops = list(arch.values())
    return 2.0 * ops.count("nor_conv_3x3") + ops.count("nor_conv_1x1") - ops.count("none")


@pytest.mark.parametrize("model", PREDICTORS)
def test_every_predictor_learns_an_additive_target(model: str) -> None:
    rng = np.random.default_rng(0)
    picks = rng.choice(len(CELLS), 160, replace=False)
    train, test = [CELLS[i] for i in picks[:120]], [CELLS[i] for i in picks[120:]]
    predictor = Predictor(OneHotEncoding(FORMAT.choices()), model, seed=0)
    with pytest.raises(NotFittedError, match="queried before it was fitted"):
        predictor.predict(test)
    predictor.fit(train, [_target(a) for a in train])
    mean, std = predictor.predict(test)
    truth = np.array([_target(a) for a in test])
    # smooth models fit an additive function almost exactly; trees on 120 points approximate it by steps
    assert np.corrcoef(mean, truth)[0, 1] > (0.7 if model in TREES else 0.95)
    assert mean.shape == std.shape == (40,)
    assert (std >= 0).all()
    assert [values.shape for values in predictor.predict([])] == [(0,), (0,)]  # every model alike
    again, _ = (
        Predictor(OneHotEncoding(FORMAT.choices()), model, seed=0).fit(train, [_target(a) for a in train]).predict(test)
    )
    np.testing.assert_allclose(again, mean)  # seeded


def test_predictor_refuses_another_space_and_bad_features() -> None:
    predictor = Predictor(PathEncoding(FORMAT), "ridge").fit(CELLS[:20], list(range(20)))
    with pytest.raises(ValueError, match="path encoding: architecture is not of this space: unknown choices"):
        predictor.predict([{"normal/node2/op0": "sep_conv_3x3"}])
    with pytest.raises(ValueError, match=r"expected a \[n, 100\] path encoding of this space, got shape \(3, 30\)"):
        PathEncoding(FORMAT).check_matrix(OneHotEncoding(FORMAT.choices()).encode_many(CELLS[:3]))
    with pytest.raises(ValueError, match="unknown predictor 'svm'; valid predictors: ridge"):
        Predictor(PathEncoding(FORMAT), "svm")  # type: ignore[arg-type]
    with_extra = Predictor(OneHotEncoding([Choice("a", (0, 1))]), "ridge", num_extra_features=1)
    with pytest.raises(ValueError, match=r"extra_features must have shape \(2, 1\)"):
        with_extra.fit([{"a": 0}, {"a": 1}], [0.0, 1.0], np.zeros((2, 3)))
    with pytest.raises(TypeError, match="encoding must be an Encoding .*one-hot, path, cell-adjacency.*got 'one-hot'"):
        Predictor("one-hot")  # type: ignore[arg-type]


@pytest.mark.parametrize("model", ["ridge", "mlp_ensemble", "lightgbm"])
def test_non_finite_extra_features_are_refused_naming_the_first_entry(model: str) -> None:
    # unchecked, a NaN made the MLP's standardisation NaN for every row, and LightGBM dropped the column
    archs = [{"a": i % 2} for i in range(6)]
    extra = np.arange(12, dtype=float).reshape(6, 2)
    extra[4, 1] = np.nan
    predictor = Predictor(OneHotEncoding([Choice("a", (0, 1))]), model, num_extra_features=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"must be finite; got 1 non-finite value\(s\), the first at row 4, column 1"):
        predictor.fit(archs, list(range(6)), extra)
    predictor.fit(archs, list(range(6)), np.nan_to_num(extra))
    with pytest.raises(ValueError, match=r"the first at row 0, column 0 \(inf\)"):
        predictor.predict(archs[:1], np.array([[np.inf, 0.0]]))


def test_extra_features_carry_information_the_encoding_lacks() -> None:
    # the target is the extra feature itself; a one-choice encoding alone cannot predict it
    archs = [{"a": i % 2} for i in range(40)]
    feature = np.linspace(0, 1, 40)[:, None]
    predictor = Predictor(OneHotEncoding([Choice("a", (0, 1))]), "ridge", num_extra_features=1)
    mean, _ = predictor.fit(archs, feature[:, 0] * 10, feature).predict(archs, feature)
    np.testing.assert_allclose(mean, feature[:, 0] * 10, atol=1e-3)
