"""The training run: train on train-weaksup, select on train-fullsup, test once.

:func:`run` follows wsolevaluation's protocol. Train-fullsup (``num_val_sample_per_class`` images per class
when set) is evaluated before training (epoch 0) and after every epoch; the checkpoint to test is the last
one or the best by the selection metric (the protocol's, or a label-free criterion the method offers:
``--set selection=<name>``) among the epochs of selectable phases (ties keep the earliest epoch); the test
split is evaluated exactly once, on that checkpoint. Training runs the method's phases in order, each with
its loader (rebuilt at the phase's start, with its batch size) and the optimizers it steps
(:mod:`wsolbench.engine.loop`). Epochs are numbered from 1 over all phases; every history row names its
phase. On CUDA: AMP for training (bf16 where supported, else fp16 with a gradient scaler; evaluation stays
fp32) and channels_last; optionally ``torch.compile``. Under ``torchrun`` the model is wrapped in
DistributedDataParallel (BatchNorm layers become SyncBatchNorm on GPUs) and every split is sharded so that
no image is counted twice. ``last.pt`` after every epoch makes ``--resume`` exact anywhere in any phase.
"""

from __future__ import annotations

import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from wsolbench.data.datasets import hold_out_per_class, open_dataset, resolve_spec, sample_per_class
from wsolbench.data.pipeline import make_loader
from wsolbench.engine import checkpoint
from wsolbench.atomic import remove_stale_temporaries
from wsolbench.engine.distributed import Processes, barrier, start, stop
from wsolbench.engine.fingerprint import first_difference, run_fingerprint
from wsolbench.engine.scoring_pool import ScoringPool, available_cores
from wsolbench.engine.evaluation import ScoremapWriter, evaluate_model, selection_score
from wsolbench.engine.loop import TrainingLoop, per_process_batch, phase_loader
from wsolbench.errors import MethodContractError, WsolbenchError
from wsolbench.lock import LOCK_NAME, FolderLock
from wsolbench.method import FULLY_SUPERVISED, WEAKLY_SUPERVISED, Method, Phase, StepContext, TrainingSettings
from wsolbench.plugins import plugins, registry
from wsolbench.protocol import SELECTION_METRICS, RunConfig
from wsolbench.results import build_record, write_record

#: where ``save_scoremaps`` keeps the test split's maps and class scores, relative to the run folder
SCOREMAPS, CLASS_SCORES = "scoremaps", "class_scores.npz"
#: seed offsets of the generators a run owns besides the loaders' (the method's one also adds the rank)
_METHOD_SEED, _SAMPLER_SEED, _PHASE_SEED = 1_000_003, 2_000_003, 7_919


@dataclass
class RunInfo:
    """What observer hooks learn about a run."""

    config: RunConfig
    out_dir: Path
    device: str
    world_size: int
    loggers: tuple[str, ...] = ()  #: observer plugins asked for with ``--log`` (e.g. "tensorboard")


@dataclass(frozen=True)
class Acceleration:
    """GPU mechanics: ``amp`` / ``channels_last`` are ``auto`` (on for CUDA), ``on`` or ``off``."""

    amp: str = "auto"
    channels_last: str = "auto"
    compile: bool = False

    def resolve(self, device: torch.device) -> tuple[torch.dtype | None, bool]:
        """The autocast dtype (None: full precision) and whether to use channels_last on ``device``."""
        for name, value in (("amp", self.amp), ("channels_last", self.channels_last)):
            if value not in ("auto", "on", "off"):
                raise WsolbenchError(f"{name} must be auto, on or off, got {value!r}")
        cuda = device.type == "cuda"
        dtype = None
        if self.amp == "on" or (self.amp == "auto" and cuda):
            dtype = torch.bfloat16 if not cuda or torch.cuda.is_bf16_supported() else torch.float16
        return dtype, self.channels_last == "on" or (self.channels_last == "auto" and cuda)


@dataclass
class _Selection:
    """Train-fullsup history and the best selectable epoch so far (by ``metric``; ties keep the earliest)."""

    metric: str
    history: list[dict] = field(default_factory=list)
    best: dict | None = None  # {"epoch", "score"}

    def add(self, row: dict, selectable: bool) -> bool:
        """Record ``row``; True when it is the new best."""
        self.history.append(row)
        if not selectable:
            return False
        value = selection_score(row, self.metric)
        if self.best is None or value > self.best["score"]:
            self.best = {"epoch": row["epoch"], "score": value}
            return True
        return False


def _checked_phases(method: Method, settings: TrainingSettings, config: RunConfig) -> list[Phase]:
    phases = method.phases(settings)
    where = f"method {method.name!r}: phases()"
    if not isinstance(phases, list) or not phases or not all(isinstance(p, Phase) for p in phases):
        raise MethodContractError(f"{where} must return a non-empty list of wsolbench.method.Phase")
    names = [phase.name for phase in phases]
    if len(set(names)) != len(names) or not all(names):
        raise MethodContractError(f"{where}: phase names must be distinct and non-empty, got {names}")
    for phase in phases:
        if isinstance(phase.epochs, bool) or not isinstance(phase.epochs, int) or phase.epochs < 0:
            raise MethodContractError(f"{where}: phase {phase.name!r} has {phase.epochs!r} epochs")
        if phase.batch_size is not None and (not isinstance(phase.batch_size, int) or phase.batch_size < 1):
            raise MethodContractError(f"{where}: phase {phase.name!r} has batch size {phase.batch_size!r}")
        if phase.epochs and not phase.optimizers:
            raise MethodContractError(f"{where}: phase {phase.name!r} trains {phase.epochs} epochs but steps no "
                                      "optimizer")
    trained = [phase for phase in phases if phase.epochs]
    if config.eval_checkpoint == "last":
        if trained and not trained[-1].selectable:
            raise MethodContractError(f"{where}: the last phase {trained[-1].name!r} is not selectable, so the "
                                      "protocol's last checkpoint cannot be tested")
        if not trained and not (config.evaluate_epoch0 and phases[0].selectable):
            raise WsolbenchError("nothing to test: no epoch trains and the epoch-0 evaluation is switched off "
                                 "(evaluate_epoch0=false)")
    elif not any(p.selectable for p in trained) and not (config.evaluate_epoch0 and phases[0].selectable):
        raise WsolbenchError("eval_checkpoint=best but no evaluated epoch is selectable")
    return phases


def _checked_criteria(method: Method, config: RunConfig, annotation: str) -> dict:
    criteria = method.selection_criteria()
    if not isinstance(criteria, dict) or not all(isinstance(k, str) and callable(v) for k, v in criteria.items()):
        raise MethodContractError(f"method {method.name!r}: selection_criteria() must return a dict of name -> "
                                  "callable")
    protocol_metrics = SELECTION_METRICS.get(annotation, ())
    if config.selection_metric not in protocol_metrics and config.selection_metric not in criteria:
        known = [*protocol_metrics, *criteria]
        raise WsolbenchError(f"selection {config.selection_metric!r} is neither a protocol metric for "
                             f"{annotation} nor a criterion of method {method.name!r}; choose from {', '.join(known)}")
    return criteria


def _sync_batchnorm(model: nn.Module, processes: Processes) -> tuple[nn.Module, bool]:
    """BatchNorm -> SyncBatchNorm under DDP on GPUs (PyTorch's SyncBatchNorm runs on GPUs only), as the
    statistics of the global batch are what a single-process run computes."""
    if not processes.distributed or processes.device.type != "cuda":
        return model, False
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        return model, False
    return nn.SyncBatchNorm.convert_sync_batchnorm(model), True


def run(config: RunConfig, *, out_dir: str | Path, root: str | Path | None = None, device: str = "auto",
        seed: int = 0, resume: bool = False, weights_path: str | None = None,
        acceleration: Acceleration = Acceleration(), argv: list[str] | None = None, loggers=(),
        save_scoremaps: bool = False, eval_workers: int | None = None) -> dict:
    """Train, select and test as :mod:`this module <wsolbench.engine.fit>` describes; return the run record.

    The record is written atomically to ``<out_dir>/record.json`` (by rank 0) only once the test split was
    evaluated; checkpoints go to ``<out_dir>/checkpoints/``. ``resume`` continues from ``last.pt``.
    ``save_scoremaps`` keeps the test split's normalised maps as ``<out_dir>/scoremaps/<image_id>.npy`` and
    its class scores as ``<out_dir>/class_scores.npz`` (:class:`~wsolbench.engine.evaluation.ScoremapWriter`),
    which ``wsolbench evaluate`` re-scores and ``wsolbench report`` draws without the model.
    ``eval_workers`` processes score the evaluation maps while the model predicts the next batches (default:
    the CPU cores available, shared among the processes of a distributed run; 1: in this process); the
    scores do not depend on it.
    """
    out_dir = Path(out_dir)
    processes = start(device)
    lock = FolderLock(out_dir, "--out")
    try:
        if processes.is_main:  # before any compute: one writer per run folder, and a folder it can write
            started = (out_dir / LOCK_NAME).exists() or (out_dir / "checkpoints").exists()
            lock.acquire()
            remove_stale_temporaries(out_dir, locked=True)
            _check_out_dir(out_dir, resume, started)
        barrier(processes)
        workers = eval_workers if eval_workers is not None else max(available_cores() // processes.world_size, 1)
        with ScoringPool(workers) as pool:
            return _Run(config, out_dir, root, processes, seed, weights_path, acceleration, argv or sys.argv,
                        tuple(loggers), save_scoremaps, pool).execute(resume)
    finally:
        lock.release()
        stop(processes)


def _check_out_dir(out_dir: Path, resume: bool, started: bool) -> None:
    """Refuse a finished run folder, and ``--resume`` where no run ever ``started`` (no lock file was left)."""
    record = out_dir / "record.json"
    if record.exists():
        raise WsolbenchError(f"{record} exists: the run is finished" + ("; nothing to resume" if resume else
                             "; choose another --out"))
    if resume and not started:
        raise WsolbenchError(f"--resume: no run was started in {out_dir}; start it without --resume")


class _Run:
    """One run's objects: datasets, method, model, training loop, selection; :meth:`execute` runs it."""

    def __init__(self, config: RunConfig, out_dir: Path, root, processes: Processes, seed: int, weights_path,
                 acceleration: Acceleration, argv, loggers, save_scoremaps: bool = False,
                 pool: ScoringPool | None = None):
        self.started = time.perf_counter()
        self.pool = pool
        self.save_scoremaps = save_scoremaps
        self.config, self.out_dir, self.root, self.processes, self.seed = config, out_dir, root, processes, seed
        self.argv, self.acceleration = argv, acceleration
        self.checkpoints = out_dir / "checkpoints"
        checkpoint.seed_everything(seed)
        self.spec = resolve_spec(config.dataset, root)
        method_class = registry("method").get(config.method)
        self.method = method_class(
            method_class.make_hparams(config.hparams), backbone=config.backbone, num_classes=self.spec.num_classes,
            pretrained=config.pretrained, weights_path=weights_path, large_feature_map=config.large_feature_map,
            classifier_ratio=config.classifier_ratio)
        self.splits = _splits(self.method, self.spec, root, config, seed)
        self.settings = TrainingSettings.from_config(config)
        self.phases = _checked_phases(self.method, self.settings, config)
        self.criteria = _checked_criteria(self.method, config, self.spec.annotation)
        for phase in self.phases:  # before any compute
            batch_size = phase.batch_size or config.batch_size
            per_process_batch(batch_size, processes, f"phase {phase.name!r}: batch size")
            if phase.epochs and batch_size > len(self.splits["train"]):
                raise WsolbenchError(f"phase {phase.name!r}: batch size {batch_size} exceeds the "
                                     f"{len(self.splits['train'])} training images; choose --set batch_size=N "
                                     f"with N <= {len(self.splits['train'])}")
        shard = {"rank": processes.rank, "world_size": processes.world_size, "device": processes.device}
        self.eval_loaders = {split: _eval_loader(self.splits[split], config.batch_size // processes.world_size,
                                                 seed, shard) for split in ("val", "test")}

        self.autocast_dtype, self.channels_last = acceleration.resolve(processes.device)
        self.fingerprint = run_fingerprint(
            config, seed=seed, splits=self.splits, device=processes.device.type, world_size=processes.world_size,
            autocast=str(self.autocast_dtype), channels_last=self.channels_last, compile=acceleration.compile,
            weights_path=weights_path, code=_code_versions(config))
        model = self.method.build_model().to(processes.device)
        model, self.sync_batchnorm = _sync_batchnorm(model, processes)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        context = StepContext(epoch=0, step=0, device=processes.device, num_classes=self.spec.num_classes,
                              generator=torch.Generator().manual_seed(seed + _METHOD_SEED * processes.rank))
        self.loop = TrainingLoop(self.method, model, self.method.optimizers(model, self.settings), processes,
                                 context=context, autocast_dtype=self.autocast_dtype,
                                 channels_last=self.channels_last, compile=acceleration.compile)
        self.sampler_generator = torch.Generator().manual_seed(seed + _SAMPLER_SEED)
        self.selection = _Selection(config.selection_metric)
        self.info = RunInfo(config, out_dir, str(processes.device), processes.world_size, loggers)
        self.hooks = plugins().manager.hook

    # --- the run -----------------------------------------------------------------------------------------

    def execute(self, resume: bool) -> dict:
        state, done = self._resumed_state() if resume else None, 0
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.loop.load_state_dict(state["loop"])
            self.method.load_state_dict(state["method"])
            self.selection.history, self.selection.best, done = state["history"], state["best"], state["epoch"]
        elif self.processes.is_main and self.checkpoints.exists():
            shutil.rmtree(self.checkpoints)
        barrier(self.processes)
        if self.processes.is_main:
            self.hooks.wsolbench_run_start(run=self.info)
        if state is None:
            if self.config.evaluate_epoch0:
                self._evaluate_epoch(0, self.phases[0], loss=None, logs={})
            self.method.on_fit_start(self.model, self.loop.context)
        self._train(done, state)
        return self._test_and_record()

    def _resumed_state(self) -> dict | None:
        """``last.pt`` when it continues this very run (same fingerprint); None when the run was stopped
        before its first epoch ended (it starts again from the beginning)."""
        path = self.checkpoints / checkpoint.LAST
        if not path.is_file():
            if self.processes.is_main:
                print(f"wsolbench: {path} does not exist (the run stopped before its first epoch ended): "
                      "starting it from the beginning", file=sys.stderr)
            return None
        state = checkpoint.load(path)
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise WsolbenchError(f"{path} was written by an older wsolbench (no run fingerprint); start the run "
                                 "again without --resume")
        difference = first_difference(state["fingerprint"], self.fingerprint)
        if difference:
            raise WsolbenchError(f"--resume: {path} belongs to another run: {difference}; resume with the "
                                 "command that started it, or choose another --out")
        return state

    def _train(self, done: int, state: dict | None) -> None:
        last = 0
        for index, phase in enumerate(self.phases):
            first, last = last + 1, last + phase.epochs
            if last <= done or not phase.epochs:
                continue
            loader, sampler = phase_loader(self.method, self.splits["train"], phase.batch_size or self.config.batch_size,
                                           self.processes, seed=self.seed + _PHASE_SEED * index,
                                           sampler_generator=self.sampler_generator)
            generators = {"loader": loader.generator, "method": self.loop.context.generator,
                          "sampler": self.sampler_generator}
            inside = state is not None and first <= done
            if state is not None and not inside:  # resuming at this phase's start: its loader is new
                checkpoint.restore_random_states(state["random"], {k: g for k, g in generators.items()
                                                                   if k != "loader"})
            self.loop.start_phase(phase)
            if inside:  # resuming within this phase: every state as at the end of epoch `done`
                checkpoint.restore_random_states(state["random"], generators)
            state = None
            for epoch in range(max(first, done + 1), last + 1):
                if hasattr(sampler, "set_epoch"):
                    sampler.set_epoch(epoch)
                result = self.loop.train_epoch(loader, epoch)
                self._evaluate_epoch(epoch, phase, loss=result.loss, logs=result.logs)
                if self.processes.is_main:
                    checkpoint.save(self.checkpoints / checkpoint.LAST, {
                        "epoch": epoch, "model": self.model.state_dict(), "loop": self.loop.state_dict(),
                        "method": self.method.state_dict(), "history": self.selection.history,
                        "best": self.selection.best, "random": checkpoint.random_states(generators),
                        "fingerprint": self.fingerprint})
                barrier(self.processes)

    def _evaluate(self, split: str, description: str, writer: ScoremapWriter | None = None) -> dict:
        return evaluate_model(self.method, self.model, self.eval_loaders[split],
                              metadata_dir=self.splits[split].metadata.folder, annotation=self.spec.annotation,
                              cam_curve_interval=self.config.cam_curve_interval,
                              iou_thresholds=self.config.iou_thresholds, processes=self.processes,
                              criteria=self.criteria, description=description, writer=writer, pool=self.pool)

    def _evaluate_epoch(self, epoch: int, phase: Phase, *, loss, logs: dict) -> None:
        scores = self._evaluate("val", f"epoch {epoch} train-fullsup")
        row = {"epoch": epoch, "phase": phase.name, **scores}
        if epoch:
            row.update(loss=loss, logs=logs)
        if self.selection.add(row, phase.selectable) and self.processes.is_main:
            checkpoint.save(self.checkpoints / checkpoint.BEST, {"epoch": epoch, "model": self.model.state_dict(),
                                                                 "fingerprint": self.fingerprint})
        if self.processes.is_main:
            self.hooks.wsolbench_epoch_end(run=self.info, epoch=epoch, scores={k: v for k, v in row.items()
                                                                               if k != "epoch"})

    def _selected(self) -> dict:
        if self.config.eval_checkpoint == "best":
            metric = self.config.selection_metric
            kind = "method criterion, label-free" if metric in self.criteria else "protocol metric"
            path, epoch = self.checkpoints / checkpoint.BEST, self.selection.best["epoch"]
            best = checkpoint.load(path)
            if best.get("epoch") != epoch or best.get("fingerprint") != self.fingerprint:
                raise WsolbenchError(f"{path} holds epoch {best.get('epoch')} of "
                                     f"{'this' if best.get('fingerprint') == self.fingerprint else 'another'} run, "
                                     f"not the selected epoch {epoch}; start the run again without --resume")
            self.model.load_state_dict(best["model"])
            return {"epoch": epoch, "criterion": f"best {metric} on train-fullsup ({kind})"}
        return {"epoch": self.selection.history[-1]["epoch"], "criterion": "last"}

    def _test_and_record(self) -> dict:
        selected = self._selected()
        selected_scores = next(h for h in self.selection.history if h["epoch"] == selected["epoch"])
        if self.processes.is_main:
            self.hooks.wsolbench_checkpoint_selected(run=self.info, epoch=selected["epoch"], scores=selected_scores)
        writer = ScoremapWriter(self.out_dir / SCOREMAPS, self.out_dir / CLASS_SCORES, self.processes) \
            if self.save_scoremaps else None
        test_scores = self._evaluate("test", "test", writer)
        precision = str(self.autocast_dtype).replace("torch.", "") if self.autocast_dtype else "off"
        record = build_record(
            self.config, self.seed, self.argv, selected=selected, history=self.selection.history,
            phases=[{"name": p.name, "epochs": p.epochs, "optimizers": list(p.optimizers),
                     "batch_size": p.batch_size or self.config.batch_size, "selectable": p.selectable}
                    for p in self.phases],
            scores={"train_fullsup": {k: v for k, v in selected_scores.items() if k != "epoch"},
                    "test": test_scores},
            acceleration={"amp": precision, "evaluation_precision": "float32", "channels_last": self.channels_last,
                          "compile": self.acceleration.compile, "sync_batchnorm": self.sync_batchnorm,
                          "world_size": self.processes.world_size, "device": str(self.processes.device)},
            training_data=_training_data(self.method, self.config, self.splits),
            scoremaps=None if writer is None else {
                "folder": SCOREMAPS, "class_scores": CLASS_SCORES if writer.ids else None,
                "extra": {name: folder.name for name, folder in writer.extra_folders.items()}},
            wall_time_s=time.perf_counter() - self.started)
        if self.processes.is_main:
            write_record(self.out_dir / "record.json", record)
            self.hooks.wsolbench_run_finish(run=self.info, record=record)
        return record


def _code_versions(config: RunConfig) -> dict[str, str]:
    """``{distribution: version}`` of the plugins that registered the run's method, backbone and dataset."""
    wanted = {("method", config.method), ("backbone", config.backbone), ("dataset", config.dataset)}
    return {info.distribution: info.version for info in plugins().plugins
            if any(name in info.registered.get(kind, ()) for kind, name in wanted)}


def _splits(method: Method, spec, root, config: RunConfig, seed: int) -> dict:
    """The datasets of the roles ``train``, ``val`` (selection) and ``test`` (see ``Method.training_split``)."""
    def split(name: str, train: bool):
        return open_dataset(spec, root, name, train=train, image_size=config.image_size)

    test = split(config.test_split, False)
    if method.training_split == WEAKLY_SUPERVISED:
        return {"train": split(config.train_split, True),
                "val": sample_per_class(split(config.val_split, False), config.num_val_sample_per_class, seed),
                "test": test}
    if method.training_split != FULLY_SUPERVISED:
        raise MethodContractError(f"method {method.name!r}: training_split must be {WEAKLY_SUPERVISED!r} or "
                                  f"{FULLY_SUPERVISED!r}, got {method.training_split!r}")
    rest, held_out = hold_out_per_class(split(config.val_split, False), method.holdout_per_class, seed)
    return {"train": sample_per_class(rest, config.num_val_sample_per_class, seed), "val": held_out, "test": test}


def _training_data(method: Method, config: RunConfig, splits: dict) -> dict:
    """The record's ``training_data``: what the run learnt from and what it selected on."""
    fully = method.training_split == FULLY_SUPERVISED
    return {"split": config.val_split if fully else config.train_split, "localization_labels": fully,
            "images": len(splits["train"]),
            "selection": f"{config.val_split}, {'held out of training' if fully else 'as the protocol samples it'}",
            "selection_images": len(splits["val"])}


def _eval_loader(dataset, batch_size: int, seed: int, shard: dict):
    return make_loader(dataset, max(batch_size, 1), seed=seed, shuffle=False, **shard)
