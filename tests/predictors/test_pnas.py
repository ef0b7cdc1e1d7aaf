"""PNAS progressive search: the NAS-Bench-201 growth rule, level-by-level beams, exact resume, bad levels."""

from __future__ import annotations

import pytest

from lightning_nas.arch import Choice
from lightning_nas.search import (
    ProgressiveSearch,
    default_levels,
    nasbench201_complete,
    run_budgeted_search,
)
from lightning_nas.spaces import NasBench201Format, NasBench201Network
from tests.predictors._ask_tell import additive_value, ask_and_tell
from tests.tiny import tiny_nb201_table

FORMAT = NasBench201Format()
CHOICES = [Choice(f"n{i}/op{j}", (0, 1, 2)) for i in range(3) for j in range(2)]


def test_nasbench201_grows_node_by_node_and_partial_cells_end_at_their_node() -> None:
    assert default_levels(FORMAT.choices()) == [["1<-0"], ["2<-0", "2<-1"], ["3<-0", "3<-1", "3<-2"]]
    level2 = nasbench201_complete({"1<-0": "nor_conv_3x3", "2<-0": "skip_connect", "2<-1": "nor_conv_1x1"}, 2)
    assert FORMAT.format(level2) == "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"
    # the completed cell computes node 2 of the partial cell: its output is skip(node 2) and nothing else
    network = NasBench201Network(level2, channels=4, cells_per_stage=1)
    assert [type(op).__name__ for op in network.layers[0].ops][3:] == ["Zero", "Zero", "Identity"]


def test_beam_keeps_the_surrogate_top_k_per_level() -> None:
    strategy = ProgressiveSearch(CHOICES, beam_size=3, predictor="ridge", seed=0)
    asked = ask_and_tell(strategy, 9)
    assert [lv for _, lv, _ in strategy.records] == [1, 1, 1, 2, 2, 2, 3, 3, 3]
    # level 1 decides n0 (9 combinations, 3 sampled); undecided choices are evaluated at their first candidate
    assert all(arch["n1/op0"] == arch["n1/op1"] == arch["n2/op0"] == 0 for arch in asked[:3])
    # the surrogate has seen only n0's choices, so it ranks level 2's expansions by their n0 part: the beam is the
    # best level-1 cell's expansions
    best_first = max(asked[:3], key=additive_value)
    assert all((arch["n0/op0"], arch["n0/op1"]) == (best_first["n0/op0"], best_first["n0/op1"]) for arch in asked[3:6])


def test_resume_mid_level_continues_exactly() -> None:
    def build(seed: int) -> ProgressiveSearch:
        return ProgressiveSearch(CHOICES, beam_size=3, predictor="ridge", seed=seed)

    expected = ask_and_tell(build(0), 14)  # through the three levels and into refinement
    first = build(0)
    head = ask_and_tell(first, 7)
    resumed = build(5)
    resumed.load_state_dict(first.state_dict())
    assert head + ask_and_tell(resumed, 7) == expected


def test_levels_must_cover_every_choice_once() -> None:
    with pytest.raises(ValueError, match="levels must name every choice exactly once"):
        ProgressiveSearch(CHOICES, levels=[["n0/op0"], ["n0/op0"]])
    with pytest.raises(ValueError, match="unknown predictor 'svm'"):
        ProgressiveSearch(CHOICES, predictor="svm")  # type: ignore[arg-type]


def test_budgeted_search_on_a_small_table() -> None:
    table = tiny_nb201_table()
    strategy = ProgressiveSearch(table.choices(), beam_size=5, predictor="ridge", metric="val", seed=0)
    result = run_budgeted_search(strategy, table, budget=20.0, cost_column="time", report_metric="val")
    assert result.num_queries == 20
    assert result.best_search == 18.0  # all six edges 3x3 convolutions
