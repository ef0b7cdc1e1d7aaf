"""Record how the architecture evolves during a search: a JSON-lines history, scalars, text, pictures, W&B tables."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from typing_extensions import override

from lightning_nas.arch import Genotype, save_arch
from lightning_nas.callbacks import _loggers
from lightning_nas.callbacks._history import JsonLines
from lightning_nas.callbacks._paths import run_dir, writes_run_files
from lightning_nas.callbacks.pictures import (
    CellRenderer,
    draw_cell,
    graphviz_available,
    matplotlib_available,
    plot_probabilities,
    plot_subnets,
)
from lightning_nas.methods.base import ArchProbabilities, NASModule, export_payload

__all__ = ["GenotypeLogger", "arch_scalars"]


class GenotypeLogger(pl.Callback):
    """Each epoch (and at fit end, if training moved on since), record the method's architecture.

    Works with every :class:`~lightning_nas.methods.NASModule` through its architecture interface (``current_arch``,
    ``export``, ``arch_probabilities``, ``sampled_archs``, ``subnet_results``, ``cell_graphs``); other modules are
    left alone. On global rank 0 it:

    * appends ``{"epoch", "step", "event", "arch", "result", "probabilities", "sampled", "metrics"}`` as one line of
      ``<run dir>/<history_filename>``: a whole line per write (one ``os.write`` on an ``O_APPEND`` descriptor,
      then ``fsync``), so a crash never leaves half a line;
    * logs scalars to every logger: ``arch/prob/<decision>/<candidate>`` (e.g. the softmax of each DARTS edge's
      alphas), ``arch/entropy/<decision>`` and ``arch/entropy_mean``, ``arch/count/<op>/<group>`` (e.g.
      ``arch/count/skip_connect/normal``: skip connections in the normal cell), and
      ``arch/sampled/<choice>/<candidate>``, the frequency of each sampled choice this epoch;
    * logs the architecture as text (TensorBoard) and as a growing ``wandb.Table`` ``arch/table`` (W&B);
    * draws the cells (``pictures/cell_<name>_epochNNN.png``), a heatmap of the probabilities
      (``pictures/probabilities_epochNNN.png``) and the evaluated subnets' ``subnet_metric`` against params/FLOPs
      (``pictures/subnets_epochNNN.png``), and logs them as images to TensorBoard and W&B;
    * at fit end writes the final architecture as JSON next to the checkpoints, and on W&B logs it (with the
      history) as an ``architecture`` artifact and the best (else last) checkpoint as a ``model`` artifact.

    The run directory is :func:`~lightning_nas.callbacks.run_dir`: the logger's ``log_dir`` for CSV and
    TensorBoard, ``<save_dir>/<name>/<version>`` (where the checkpoints go) for other loggers, and
    ``default_root_dir`` without a logger. The history's lines and the sample counters are saved in checkpoints: a
    resumed run first rewrites the file (atomically) with exactly the lines the checkpoint holds, so nothing
    recorded after the checkpoint is duplicated and a new log directory gets the whole history, then re-records an
    epoch that ended after the checkpoint was taken (Lightning checkpoints after validation, before the epoch's
    ``on_train_epoch_end``), so nothing is lost. That holds too for a checkpoint taken at the last step
    (``max_steps``): the resumed fit has no step left and Lightning skips its loop, so the logger ends that epoch at
    fit end.

    Args:
        history_filename: the JSON-lines file inside the run directory.
        final_filename: the final architecture's file, beside the checkpoints (beside the history without any).
        log_probabilities: log a scalar per decision and candidate (entropies are always logged).
        count_ops: ops whose occurrences in each group of choices are logged (a group is the part of a choice name
            before its first ``/``: ``normal``, ``reduce``).
        pictures: draw and log the pictures (needs matplotlib; without it a warning says so and none are drawn).
        pictures_every_n_epochs: draw every n-th epoch (and at the last).
        cell_renderer: ``"auto"`` draws cells with graphviz's ``dot`` if installed, else with matplotlib (saying
            so once); ``"graphviz"`` requires ``dot``; ``"matplotlib"`` never uses it.
        subnet_metric: the metric of ``subnet_results()`` plotted against ``params`` and ``flops``.
        log_artifacts: on W&B, upload the final architecture and the checkpoint as artifacts.

    Example:
        >>> GenotypeLogger(pictures=False).state_key
        "GenotypeLogger{'history': 'architecture_history.jsonl'}"
    """

    def __init__(
        self,
        *,
        history_filename: str = "architecture_history.jsonl",
        final_filename: str = "final_architecture.json",
        log_probabilities: bool = True,
        count_ops: Sequence[str] = ("skip_connect",),
        pictures: bool = True,
        pictures_every_n_epochs: int = 1,
        cell_renderer: CellRenderer = "auto",
        subnet_metric: str = "val/acc",
        log_artifacts: bool = True,
    ) -> None:
        for label, name in (("history_filename", history_filename), ("final_filename", final_filename)):
            if not name or Path(name).name != name:
                raise ValueError(f"{label} must be a plain file name, got {name!r}")
        if pictures_every_n_epochs < 1:
            raise ValueError(f"pictures_every_n_epochs must be >= 1, got {pictures_every_n_epochs}")
        if cell_renderer not in ("auto", "graphviz", "matplotlib"):
            raise ValueError(f"cell_renderer must be 'auto', 'graphviz' or 'matplotlib', got {cell_renderer!r}")
        self.history_filename, self.final_filename = history_filename, final_filename
        self.log_probabilities, self.count_ops = log_probabilities, tuple(count_ops)
        self.pictures, self.pictures_every_n_epochs = pictures, pictures_every_n_epochs
        self.cell_renderer: CellRenderer = cell_renderer
        self.subnet_metric, self.log_artifacts = subnet_metric, log_artifacts
        # Saved in checkpoints.
        self.lines: list[str] = []
        self.last_epoch = -1
        self.last_step = -1
        self.sample_counts: dict[str, dict[str, int]] = {}
        self.num_samples = 0
        # Per run.
        self.history: JsonLines | None = None
        self.picture_dir: Path | None = None
        self.final_path: Path | None = None
        self.last_pictures: dict[str, Path] = {}  # the pictures drawn last, printed at the end of fit
        self._draw = pictures
        self._table_rows: list[list[Any]] = []
        self._table_columns: list[str] = []
        self._restored = False  # this fit's state came from a checkpoint

    @property
    @override
    def state_key(self) -> str:
        return self._generate_state_key(history=self.history_filename)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "lines": list(self.lines),
            "last_epoch": self.last_epoch,
            "last_step": self.last_step,
            "sample_counts": {name: dict(counts) for name, counts in self.sample_counts.items()},
            "num_samples": self.num_samples,
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.lines, self.last_epoch = [str(line) for line in state_dict["lines"]], int(state_dict["last_epoch"])
        self.last_step, self.num_samples = int(state_dict["last_step"]), int(state_dict["num_samples"])
        self.sample_counts = {name: dict(counts) for name, counts in state_dict["sample_counts"].items()}
        self._restored = True

    # --------------------------------------------------------------------------------------------------- hooks
    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        # A new fit starts empty; a resumed one gets its state from the checkpoint after this hook.
        self.lines, self.last_epoch, self.last_step, self.sample_counts, self.num_samples = [], -1, -1, {}, 0
        self._restored, self._started = False, False
        directory = run_dir(trainer)  # collective: every rank asks
        if not writes_run_files(trainer):
            self.history = None
            return
        self.history = JsonLines(directory / self.history_filename)
        self.picture_dir = directory / "pictures"
        self.last_pictures = {}
        if not isinstance(pl_module, NASModule):
            return
        self._draw = self.pictures and self._can_draw(pl_module)

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, NASModule) or self.history is None:
            return
        self._started = True
        self._restore_history(trainer)
        finished = trainer.current_epoch - 1
        if (self.lines or self._restored) and self.last_epoch < finished:
            # Resumed from a checkpoint taken after this epoch's last batch but before its line was written (also
            # the first epoch's: a step checkpoint at its last batch holds no line yet; found by the kill -9 soak).
            self._record(trainer, pl_module, event="epoch_end", epoch=finished)

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if isinstance(pl_module, NASModule):
            for arch in pl_module.sampled_archs():
                self.num_samples += 1
                for name, value in arch.items():
                    counts = self.sample_counts.setdefault(name, {})
                    counts[str(value)] = counts.get(str(value), 0) + 1

    @override
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if isinstance(pl_module, NASModule) and self.history is not None:
            self._record(trainer, pl_module, event="epoch_end", epoch=trainer.current_epoch)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not isinstance(pl_module, NASModule) or self.history is None:
            return
        if self._restored and not self._started and trainer.global_step != self.last_step:
            # Resumed from a checkpoint taken after the last step (max_steps) but before its epoch's line was
            # written: Lightning skips the whole loop, so end that epoch here, in this run's history, as the
            # uninterrupted fit did (found by the kill -9 soak; its validation metrics were never computed).
            self._restore_history(trainer)
            self._record(trainer, pl_module, event="epoch_end", epoch=trainer.current_epoch)
        # Lightning ends every epoch, even one cut short by max_steps, with on_train_epoch_end; this records a fit
        # whose loop ended some other way after training moved on, so the history always ends at the final state.
        if trainer.global_step != self.last_step:
            self._record(trainer, pl_module, event="fit_end", epoch=trainer.current_epoch)
        checkpoint = trainer.checkpoint_callback
        folder = getattr(checkpoint, "dirpath", None) or self.history.path.parent
        self.final_path = Path(folder) / self.final_filename
        if not trainer.is_global_zero:
            return
        save_arch(pl_module.export(), self.final_path)
        if self.last_pictures:
            listed = "\n".join(f"  {path}" for path in self.last_pictures.values())
            rank_zero_info(f"lightning-nas: pictures of the architecture found (last drawn):\n{listed}")
        if self.log_artifacts:
            files = [self.final_path, self.history.path]
            _loggers.log_artifacts(trainer.loggers, "architecture", "architecture", files)
            best = getattr(checkpoint, "best_model_path", "") or getattr(checkpoint, "last_model_path", "")
            if best:
                _loggers.log_artifacts(trainer.loggers, "model", "model", [Path(best)])

    # ------------------------------------------------------------------------------------------------ recording
    def _restore_history(self, trainer: pl.Trainer) -> None:
        """Write the lines so far (a resumed fit's, from its checkpoint) into this run's history file."""
        if trainer.is_global_zero:
            assert self.history is not None
            self.history.rewrite(self.lines)
            self._table_rows = []
            for line in self.lines:
                self._add_table_row(json.loads(line))

    def _record(self, trainer: pl.Trainer, pl_module: NASModule, *, event: str, epoch: int) -> None:
        """Write one history line and log it everywhere; advance the position on every rank."""
        probabilities = pl_module.arch_probabilities()
        record = {
            "epoch": epoch,
            "step": trainer.global_step,
            "event": event,
            "arch": dict(pl_module.current_arch()),
            "result": export_payload(pl_module.export()),
            "probabilities": probabilities,
            "sampled": self._frequencies(pl_module) if self.num_samples else None,
            "metrics": _float_metrics(trainer.callback_metrics),
        }
        line = JsonLines.encode(record)
        if trainer.is_global_zero:
            assert self.history is not None
            self.history.append_line(line)
            self._publish(trainer, pl_module, json.loads(line), probabilities)
        self.lines.append(line)
        self.last_epoch, self.last_step = max(self.last_epoch, epoch), trainer.global_step
        self.sample_counts, self.num_samples = {}, 0

    def _publish(
        self, trainer: pl.Trainer, pl_module: NASModule, record: dict[str, Any], probabilities: ArchProbabilities | None
    ) -> None:
        step, loggers = trainer.global_step, trainer.loggers
        scalars = arch_scalars(
            record["arch"], probabilities, record["sampled"], self.count_ops, with_probabilities=self.log_probabilities
        )
        _loggers.log_scalars(loggers, {**scalars, "epoch": float(record["epoch"])}, step)
        _loggers.log_text(loggers, "arch/text", f"epoch {record['epoch']}: {pl_module.export()}", step)
        self._add_table_row(record)
        _loggers.log_table(loggers, "arch/table", self._table_columns, self._table_rows, step)
        last = record["event"] == "fit_end" or record["epoch"] + 1 >= (trainer.max_epochs or 0) > 0
        if self._draw and (last or record["epoch"] % self.pictures_every_n_epochs == 0):
            tag = f"epoch{record['epoch']:03d}" + ("_final" if record["event"] == "fit_end" else "")
            self.last_pictures = self._pictures(pl_module, probabilities, tag, f"epoch {record['epoch']}")
            for key, path in self.last_pictures.items():
                _loggers.log_image(loggers, key, path, step)

    def _pictures(
        self, pl_module: NASModule, probabilities: ArchProbabilities | None, tag: str, title: str
    ) -> dict[str, Path]:
        assert self.picture_dir is not None
        drawn: dict[str, Path] = {}
        for name, graph in pl_module.cell_graphs().items():
            path = self.picture_dir / f"cell_{name}_{tag}.png"
            caption = f"{name} cell, {title}"
            drawn[f"arch/cell_{name}"] = draw_cell(graph, path, title=caption, renderer=self.cell_renderer)
        if probabilities:
            path = self.picture_dir / f"probabilities_{tag}.png"
            drawn["arch/probabilities"] = plot_probabilities(probabilities, path, title=title)
        results = pl_module.subnet_results()
        if results:
            path = self.picture_dir / f"subnets_{tag}.png"
            plotted = plot_subnets(results, path, metric=self.subnet_metric, title=title)
            if plotted is not None:
                drawn["arch/subnets"] = plotted
        return drawn

    def _add_table_row(self, record: Mapping[str, Any]) -> None:
        arch = record["arch"]
        if not self._table_columns:
            self._table_columns = ["epoch", "step", "event", "result", *arch]
        result = record["result"]
        row = [record["epoch"], record["step"], record["event"], _compact(result)]
        self._table_rows.append(row + [str(arch.get(name, "")) for name in self._table_columns[4:]])

    def _frequencies(self, pl_module: NASModule) -> dict[str, dict[str, float]]:
        candidates = {choice.name: [str(c) for c in choice.candidates] for choice in pl_module.space.choices()}
        frequencies = {}
        for name, counts in self.sample_counts.items():
            keys = candidates.get(name, list(counts))
            frequencies[name] = {key: counts.get(key, 0) / self.num_samples for key in keys}
        return frequencies

    def _can_draw(self, pl_module: NASModule) -> bool:
        if not matplotlib_available():
            rank_zero_warn(
                "GenotypeLogger draws no pictures: matplotlib is not installed (pip install 'lightning-nas[plot]'); "
                "pass pictures=False (--genotype_logger.pictures=false) to silence this"
            )
            return False
        if self.cell_renderer != "matplotlib" and not graphviz_available() and pl_module.cell_graphs():
            if self.cell_renderer == "graphviz":
                raise FileNotFoundError(
                    "GenotypeLogger(cell_renderer='graphviz') needs graphviz's `dot` program, which is not on PATH: "
                    "install graphviz (e.g. `apt install graphviz`) or use cell_renderer='auto' or 'matplotlib'"
                )
            rank_zero_warn(
                "graphviz's `dot` program is not on PATH, so GenotypeLogger draws cells with matplotlib; install "
                "graphviz (e.g. `apt install graphviz`) for the usual layout, or set cell_renderer='matplotlib'"
            )
        return True


def arch_scalars(
    arch: Mapping[str, Any],
    probabilities: ArchProbabilities | None,
    sampled: Mapping[str, Mapping[str, float]] | None,
    count_ops: Sequence[str] = ("skip_connect",),
    *,
    with_probabilities: bool = True,
) -> dict[str, float]:
    """The scalars :class:`GenotypeLogger` logs for one architecture record.

    Example:
        >>> arch = {"normal/node2/op0": "skip_connect", "normal/node2/op1": "sep_conv_3x3", "reduce/node2/op0": "none"}
        >>> scalars = arch_scalars(arch, {"normal/node2/edge0": {"skip_connect": 0.5, "sep_conv_3x3": 0.5}}, None)
        >>> scalars["arch/count/skip_connect/normal"], round(scalars["arch/entropy/normal/node2/edge0"], 4)
        (1.0, 0.6931)
    """
    scalars: dict[str, float] = {}
    groups = dict.fromkeys(_group(name) for name in arch)
    for op in count_ops:
        for group in groups:
            count = sum(1 for name, value in arch.items() if _group(name) == group and value == op)
            scalars[f"arch/count/{op}/{group}"] = float(count)
    if probabilities:
        entropies = []
        for decision, distribution in probabilities.items():
            if with_probabilities:
                scalars.update({f"arch/prob/{decision}/{c}": float(p) for c, p in distribution.items()})
            entropy = -sum(p * math.log(p) for p in distribution.values() if p > 0)
            scalars[f"arch/entropy/{decision}"] = entropy
            entropies.append(entropy)
        scalars["arch/entropy_mean"] = sum(entropies) / len(entropies)
    for choice, frequencies in (sampled or {}).items():
        scalars.update({f"arch/sampled/{choice}/{c}": float(f) for c, f in frequencies.items()})
    return scalars


def _group(name: str) -> str:
    return name.split("/", 1)[0] if "/" in name else "all"


def _compact(result: Any) -> str:
    if isinstance(result, dict) and "normal" in result:
        return str(Genotype.from_json(result))
    return json.dumps(result, separators=(",", ":"))


def _float_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    values = {}
    for name, value in metrics.items():
        try:
            values[name] = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
    return values
