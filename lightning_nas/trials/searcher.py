"""The project's ask/tell strategies as a Ray Tune ``Searcher``.

Ray asks :meth:`StrategySearcher.suggest` for a trial's config whenever a slot is free and calls
:meth:`StrategySearcher.on_trial_complete` when the trial ends; both go to a
:class:`~lightning_nas.trials._driver.TrialDriver`, whose whole state (the strategy's population, controller
weights and baseline, generator state; the running and finished trials) is what :meth:`save` writes for Ray's
experiment checkpoints and :meth:`restore` reads back (the package's safe loader). This module imports Ray.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher
from typing_extensions import override

from lightning_nas.trials._driver import TrialDriver
from lightning_nas.trials._records import SEARCHER_STATE_FILE as STATE_FILE
from lightning_nas.trials._records import TrialRecord, load_state, save_state

__all__ = ["StrategySearcher"]
# what Ray adds to every report; the record keeps only what the trial reported
RAY_KEYS = frozenset(
    {
        "timestamp",
        "training_iteration",
        "time_this_iter_s",
        "time_total_s",
        "pid",
        "time_since_restore",
        "iterations_since_restore",
        "done",
        "date",
        "hostname",
        "node_ip",
        "experiment_id",
        "trial_id",
        "config",
        "checkpoint_dir_name",
        "should_checkpoint",
        "experiment_tag",
    }
)


class StrategySearcher(Searcher):
    """Ray Tune search algorithm over a :class:`TrialDriver`.

    Args:
        driver: the strategy, with the experiment's trial count or budget.
        on_change: called after every completion (the runner persists its record there). A suggestion need not
            be persisted: a resumed strategy re-proposes the same architectures under the same ids.
        on_record: called with each finished trial's record (progress lines).
        context: maps the finished records to extra entries of each new trial's config (e.g. the best final
            accuracy so far, for trials that stop early).
    """

    def __init__(
        self,
        driver: TrialDriver,
        on_change: Callable[[], None] | None = None,
        on_record: Callable[[TrialRecord], None] | None = None,
        context: Callable[[list[TrialRecord]], dict[str, Any]] | None = None,
    ) -> None:
        # no metric: the strategy reads the results itself, and Ray must not insist on a metric in every report
        super().__init__(metric=None, mode=None)
        self.driver = driver
        self.on_change, self.on_record, self.context = on_change, on_record, context
        self._ids: dict[str, str] = {}

    @override
    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        nxt = self.driver.next_trial()
        if nxt is None:
            return Searcher.FINISHED  # type: ignore[return-value]  # Ray documents this sentinel string
        own_id, arch = nxt
        self._ids[trial_id] = own_id
        extra = self.context(self.driver.records) if self.context is not None else {}
        return {**extra, "trial_id": own_id, "arch": json.dumps(arch, sort_keys=True)}

    @override
    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        own_id = self._ids.pop(trial_id, None)
        if own_id is None:
            return
        result = dict(result or {})
        message = str(result.get("error", "")) or (
            "the trial's Ray worker failed (see the Ray trial log)" if error else ""
        )
        metrics = {k: v for k, v in result.items() if k not in RAY_KEYS and k not in ("failed", "error")}
        record = self.driver.complete(
            own_id, metrics, error=message, wall_time_s=float(result.get("wall_time_s", 0.0) or 0.0)
        )
        if self.on_change is not None:
            self.on_change()
        if self.on_record is not None:
            self.on_record(record)

    @override
    def save(self, checkpoint_path: str) -> None:
        save_state(self.driver.state_dict(), Path(checkpoint_path))

    @override
    def restore(self, checkpoint_path: str) -> None:
        self.driver.load_state_dict(load_state(Path(checkpoint_path)))

    @override
    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        self.save(str(Path(checkpoint_dir) / STATE_FILE))

    @override
    def restore_from_dir(self, checkpoint_dir: str) -> None:
        self.restore(str(Path(checkpoint_dir) / STATE_FILE))
