"""The regression calibrated on finished runs (Baker et al. 2018) against known relations, and the stopping rule
that switches to it once enough runs have finished (issue 16)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lightning_nas.predictors import CurveRegression, extrapolate, predict_final, should_stop


def _runs(rng: np.random.Generator, count: int, sigma: float) -> np.ndarray:
    """Curves of 6 epochs whose final value is 0.2 + 0.5 y_3 + 0.3 y_4 (+ N(0, sigma^2)); epochs 1-4 random."""
    early = np.sort(rng.uniform(0.3, 0.8, (count, 4)), axis=1)
    fifth = early[:, 3] + 0.01
    final = 0.2 + 0.5 * early[:, 2] + 0.3 * early[:, 3] + rng.normal(0.0, sigma, count)
    return np.column_stack([early, fifth, final])


def test_the_regression_recovers_a_known_linear_relation() -> None:
    rng = np.random.default_rng(0)
    finished, new = _runs(rng, 40, sigma=0.0), _runs(rng, 5, sigma=0.0)
    regression = CurveRegression(finished.tolist())
    assert (regression.final_epoch, regression.num_runs) == (6, 40)
    for curve in new:
        prediction = regression.predict(curve[:4].tolist())
        assert prediction.mean == pytest.approx(curve[-1], abs=2e-3)  # the smallest penalty's shrinkage only
        assert prediction.high - prediction.low == pytest.approx(0.0, abs=1e-2)
    # every epoch observed: the prediction is the last value itself
    assert regression.predict(new[0].tolist()).mean == new[0][-1]


def test_the_interval_covers_noisy_finals_at_least_95_percent_of_the_time() -> None:
    """200 independent searches with 12 finished runs each and final noise sigma = 0.01: the 95% interval of a new
    run holds its final value in at least 95% of them, less three binomial standard errors (0.0154)."""
    trials, covered = 200, 0
    for seed in range(trials):
        rng = np.random.default_rng(seed)
        finished, new = _runs(rng, 12, sigma=0.01), _runs(rng, 1, sigma=0.01)[0]
        prediction = CurveRegression(finished.tolist()).predict(new[:3].tolist(), num_samples=200)
        covered += prediction.low <= new[-1] <= prediction.high
    assert covered / trials >= 0.95 - 3 * math.sqrt(0.95 * 0.05 / trials)


def test_few_finished_runs_give_the_last_value_plus_their_mean_gain() -> None:
    """Identical early values carry no information: the regression falls back to its intercept, the mean gain."""
    finished = [[0.5, 0.5, 0.6], [0.5, 0.5, 0.8], [0.5, 0.5, 0.7]]
    prediction = CurveRegression(finished).predict([0.4, 0.5], upper=1.0)
    assert prediction.mean == pytest.approx(0.5 + (0.1 + 0.3 + 0.2) / 3)
    assert prediction.probability_above(prediction.mean) == pytest.approx(0.5, abs=0.01)  # a symmetric t
    assert prediction.samples.max() <= 1.0


def test_bad_finished_curves_and_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 finished curves, got 2"):
        CurveRegression([[0.1, 0.2], [0.2, 0.3]])
    with pytest.raises(ValueError, match=r"one length of at least 2 epochs, got lengths \[2, 3\]"):
        CurveRegression([[0.1, 0.2], [0.2, 0.3], [0.1, 0.2, 0.3]])
    with pytest.raises(ValueError, match="non-finite"):
        CurveRegression([[0.1, math.nan], [0.2, 0.3], [0.3, 0.4]])
    with pytest.raises(ValueError, match=r"alphas must be positive ridge penalties, got \[0.0\]"):
        CurveRegression([[0.1, 0.2], [0.2, 0.3], [0.3, 0.4]], alphas=[0.0])
    regression = CurveRegression([[0.1, 0.2], [0.2, 0.3], [0.3, 0.4]])
    with pytest.raises(ValueError, match="curve must be a flat list of 1 to 2 values .*, got 3"):
        regression.predict([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=r"got an array of shape \(1, 2\)"):
        regression.predict([[0.5, 0.6]])
    with pytest.raises(ValueError, match="min_finished must be >= 3 .*, got 2"):
        predict_final([0.1, 0.2, 0.3], 4, finished=[[0.1, 0.2, 0.3, 0.4]] * 3, min_finished=2)
    with pytest.raises(ValueError, match="the finished curves have 4 epochs, but final_epoch is 6"):
        predict_final([0.1, 0.2, 0.3], 6, finished=[[0.1, 0.2, 0.3, 0.4]] * 3, min_finished=3)


def test_predict_final_switches_to_the_regression_at_min_finished() -> None:
    curve = [0.30, 0.45, 0.52]
    finished = [[0.3, 0.4, 0.5, 0.9], [0.2, 0.3, 0.4, 0.8], [0.4, 0.5, 0.6, 1.0]]  # each gains 0.4 after epoch 3
    fitted = predict_final(curve, 4, finished=finished, min_finished=4)  # too few: the curve fit
    assert fitted is not None
    assert fitted.mean == pytest.approx(extrapolate(curve, 4).mean)
    forced = predict_final(curve, 4, predictor="fit", finished=finished, min_finished=3)
    assert forced is not None
    assert forced.mean == pytest.approx(fitted.mean)
    assert predict_final(curve, 4, predictor="regression", finished=finished, min_finished=4) is None
    for predictor in ("auto", "regression"):
        calibrated = predict_final(curve, 4, predictor=predictor, finished=finished, min_finished=3)  # type: ignore[arg-type]
        assert calibrated is not None
        assert calibrated.mean == pytest.approx(0.92)
    # the curve fit says this run stays below 0.8; the finished runs say it gains 0.4
    assert should_stop(curve, best_so_far=0.8, final_epoch=4)
    assert not should_stop(curve, best_so_far=0.8, final_epoch=4, finished=finished, min_finished=3)
    assert should_stop(curve, best_so_far=0.99, final_epoch=4, finished=finished, min_finished=3)
    # the regression alone waits for min_finished runs: no prediction, no stop
    assert not should_stop(curve, 0.99, 4, predictor="regression", finished=finished, min_finished=4)
    with pytest.raises(ValueError, match="unknown predictor 'baker'; valid predictors: auto, fit, regression"):
        should_stop(curve, 0.99, 4, predictor="baker")  # type: ignore[arg-type]


def test_an_extra_series_carries_what_the_curve_does_not() -> None:
    """Curves with identical early values and finals 0.9 - 0.5 l_3, l the run's (e.g. training-loss) series: the
    curve alone can only predict the mean gain; with ``extra={"loss": ...}`` the regression recovers the relation."""
    rng = np.random.default_rng(1)
    losses = np.sort(rng.uniform(0.2, 1.0, (30, 5)), axis=1)[:, ::-1]  # falling, like a training loss
    curves = np.tile([0.5, 0.6, 0.65, 0.7, 0.0], (30, 1))
    curves[:, -1] = 0.9 - 0.5 * losses[:, 2]
    new_loss = [0.9, 0.7, 0.4, 0.3, 0.2]
    alone = CurveRegression(curves.tolist()).predict([0.5, 0.6, 0.65])
    assert alone.mean == pytest.approx(curves[:, -1].mean(), abs=1e-9)  # the early values tell the runs apart not
    regression = CurveRegression(curves.tolist(), extra={"loss": losses.tolist()}, alphas=[1e-9])
    assert regression.extra_names == ("loss",)
    prediction = regression.predict([0.5, 0.6, 0.65], extra={"loss": new_loss})
    assert prediction.mean == pytest.approx(0.9 - 0.5 * 0.4, abs=1e-6)
    assert prediction.high - prediction.low == pytest.approx(0.0, abs=1e-6)
    # the first len(curve) values of a longer series are used, whatever follows
    assert regression.predict([0.5, 0.6, 0.65], extra={"loss": [*new_loss[:3], 9.0, 9.0]}).mean == prediction.mean


def test_bad_extra_series_are_refused() -> None:
    finished = [[0.1, 0.2], [0.2, 0.3], [0.3, 0.4]]
    with pytest.raises(ValueError, match=r"extra series 'loss' must hold 3 runs of 2 values .*, got 2 runs"):
        CurveRegression(finished, extra={"loss": [[1.0, 0.9], [1.0, 0.8]]})
    with pytest.raises(ValueError, match=r"extra series 'loss' must hold 3 runs of 2 values .*lengths \[1, 2\]"):
        CurveRegression(finished, extra={"loss": [[1.0, 0.9], [1.0], [1.0, 0.7]]})
    with pytest.raises(ValueError, match="extra series 'loss' of the finished runs has non-finite values"):
        CurveRegression(finished, extra={"loss": [[1.0, math.inf], [1.0, 0.8], [1.0, 0.7]]})
    regression = CurveRegression(finished, extra={"loss": [[1.0, 0.9], [1.0, 0.8], [1.0, 0.7]]})
    with pytest.raises(ValueError, match=r"fitted with extra series \['loss'\]; got \[\]"):
        regression.predict([0.1])
    with pytest.raises(ValueError, match=r"fitted with extra series \['loss'\]; got \['los'\]"):
        regression.predict([0.1], extra={"los": [1.0]})
    with pytest.raises(ValueError, match="extra series 'loss' needs at least 1 values"):
        regression.predict([0.1], extra={"loss": []})
    with pytest.raises(ValueError, match="extra series 'loss' has non-finite values"):
        regression.predict([0.1], extra={"loss": [math.nan]})
    with pytest.raises(ValueError, match=r"fitted with extra series \[\]; got \['loss'\]"):
        CurveRegression(finished).predict([0.1], extra={"loss": [1.0]})


def test_a_window_reads_only_the_last_epochs() -> None:
    """Finals y_3 + 0.1 + 0.5 l_3 with random earlier epochs: ``window=1`` learns the relation from epoch 3's values
    alone (exactly, at a vanishing penalty), and a run's earlier epochs do not move its prediction."""
    rng = np.random.default_rng(2)
    curves = rng.uniform(0.3, 0.8, (20, 5))
    losses = rng.uniform(0.2, 1.0, (20, 5))
    curves[:, -1] = curves[:, 2] + 0.1 + 0.5 * losses[:, 2]
    regression = CurveRegression(curves.tolist(), extra={"loss": losses.tolist()}, alphas=[1e-9], window=1)
    prediction = regression.predict([0.4, 0.5, 0.6], extra={"loss": [0.9, 0.8, 0.3]})
    assert prediction.mean == pytest.approx(0.6 + 0.1 + 0.5 * 0.3, abs=1e-6)
    moved = regression.predict([0.9, 0.1, 0.6], extra={"loss": [0.1, 0.2, 0.3]})  # other epochs 1-2
    assert moved.mean == pytest.approx(prediction.mean, abs=1e-9)
    # four runs and six features (all 3 epochs of both): the whole-curve fit is underdetermined and leans on them
    whole = CurveRegression(curves[:4].tolist(), extra={"loss": losses[:4].tolist()}, alphas=[1e-9])
    assert whole.predict([0.9, 0.1, 0.6], extra={"loss": [0.1, 0.2, 0.3]}).mean != pytest.approx(
        whole.predict([0.4, 0.5, 0.6], extra={"loss": [0.9, 0.8, 0.3]}).mean
    )
    with pytest.raises(ValueError, match="window must be >= 1 epoch .*, got 0"):
        CurveRegression(curves.tolist(), window=0)


def test_a_static_feature_tells_runs_with_the_same_early_curve_apart() -> None:
    """Runs whose first 3 epochs are identical and whose final is 0.6 + 0.2 log10(lr / 0.005) (a larger learning
    rate gains more once annealed): the curve alone predicts the finished runs' mean; with the run's log10(lr) as a
    static feature the regression recovers the relation, and ``should_stop`` stops the small-lr run only."""
    lrs = np.geomspace(0.005, 0.1, 12)
    features = np.log10(lrs)[:, None]
    curves = np.tile([0.4, 0.5, 0.55, 0.6, 0.0], (12, 1))
    curves[:, -1] = 0.6 + 0.2 * np.log10(lrs / 0.005)
    alone = CurveRegression(curves.tolist()).predict([0.4, 0.5, 0.55])
    assert alone.mean == pytest.approx(curves[:, -1].mean(), abs=1e-9)
    regression = CurveRegression(curves.tolist(), features=features.tolist(), alphas=[1e-9])
    assert regression.num_features == 1
    for lr in (0.007, 0.05):
        prediction = regression.predict([0.4, 0.5, 0.55], features=[math.log10(lr)])
        assert prediction.mean == pytest.approx(0.6 + 0.2 * math.log10(lr / 0.005), abs=1e-6)
    options = {"best_so_far": 0.75, "final_epoch": 5, "finished": curves.tolist(), "min_finished": 5}
    finished_features = features.tolist()
    small = should_stop([0.4, 0.5, 0.55], features=[math.log10(0.006)], finished_features=finished_features, **options)
    large = should_stop([0.4, 0.5, 0.55], features=[math.log10(0.08)], finished_features=finished_features, **options)
    assert (small, large) == (True, False)


def test_static_features_enter_the_ridge_regression_standardised_like_the_curve() -> None:
    """At one fixed penalty the prediction is the closed-form ridge solution on the standardised curve values and
    features: w = (X'X + alpha I)^-1 X' (t - mean t), prediction = y_k + mean t + x w (X centred by standardising)."""
    rng = np.random.default_rng(3)
    curves = rng.uniform(0.3, 0.8, (15, 4))
    features = rng.normal(0.0, 2.0, (15, 2))
    alpha, k = 0.7, 2
    regression = CurveRegression(curves.tolist(), features=features.tolist(), alphas=[alpha])
    design = np.column_stack([curves[:, :k], features])
    mean, scale = design.mean(0), design.std(0)
    x = (design - mean) / scale
    target = curves[:, -1] - curves[:, k - 1]
    weights = np.linalg.solve(x.T @ x + alpha * np.eye(x.shape[1]), x.T @ (target - target.mean()))
    new_curve, new_features = [0.45, 0.5], [0.3, -1.2]
    expected = 0.5 + target.mean() + ((np.array([*new_curve, *new_features]) - mean) / scale) @ weights
    assert regression.predict(new_curve, features=new_features).mean == pytest.approx(expected, abs=1e-10)


def test_bad_static_features_are_refused() -> None:
    finished = [[0.1, 0.2], [0.2, 0.3], [0.3, 0.4]]
    with pytest.raises(ValueError, match=r"one row per finished run \(3\), all of one length >= 1; got 2 rows"):
        CurveRegression(finished, features=[[1.0], [2.0]])
    with pytest.raises(ValueError, match=r"got 3 rows of lengths \[1, 2\]"):
        CurveRegression(finished, features=[[1.0], [2.0, 1.0], [3.0]])
    with pytest.raises(ValueError, match="features of the finished runs have non-finite values"):
        CurveRegression(finished, features=[[1.0], [math.nan], [3.0]])
    regression = CurveRegression(finished, features=[[1.0], [2.0], [3.0]])
    with pytest.raises(ValueError, match="fitted with 1 static features per run; got none"):
        regression.predict([0.1])
    with pytest.raises(ValueError, match=r"features must be 1 numbers, got shape \(2,\)"):
        regression.predict([0.1], features=[1.0, 2.0])
    with pytest.raises(ValueError, match="features have non-finite values"):
        regression.predict([0.1], features=[math.inf])
    with pytest.raises(ValueError, match="fitted with 0 static features per run; got 1"):
        CurveRegression(finished).predict([0.1], features=[1.0])


def test_a_nan_best_so_far_is_refused_rather_than_read_as_beaten() -> None:
    # any P(final > nan) is 0, which would stop every run; None is how "no best yet" is said
    with pytest.raises(ValueError, match="best_so_far must be a finite number or None .*, got nan"):
        should_stop([0.3, 0.35, 0.37, 0.38], best_so_far=math.nan, final_epoch=20)
    assert should_stop([0.3, 0.35, 0.37, 0.38], best_so_far=None, final_epoch=20) is False


@pytest.mark.parametrize(
    ("predictor", "hidden", "named"),
    [("regression", "sklearn", "scikit-learn"), ("fit", "scipy", "scipy"), ("auto", "sklearn", "scikit-learn")],
)
def test_a_predictor_whose_package_is_missing_names_it_and_the_extra(
    predictor: str, hidden: str, named: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == hidden else find_spec(name, *a))
    with pytest.raises(ModuleNotFoundError, match=rf"'{predictor}' needs {named}.*lightning-nas\[predictors\]"):
        should_stop([0.3, 0.35, 0.37], best_so_far=0.9, final_epoch=20, predictor=predictor)  # type: ignore[arg-type]
