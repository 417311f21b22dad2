"""The FG-MD training loop: per-epoch mining, one batched pass per branch, validation, checkpoints.

Reproducibility: every random draw of epoch ``e`` (mining picks, shuffling, crops, flips)
comes from generators seeded with ``(seed, e)`` (and the rank, for augmentation), and the
code bank, model, optimiser and scheduler are checkpointed at the end of every epoch.
Resuming a killed run from ``last.pt`` therefore gives the same weights as a run that was
never interrupted.

Multi-process (``torchrun``): the model and the objective are wrapped together in one
DistributedDataParallel module; each rank takes its share of the epoch's permutation
(:func:`fgmd.training.batches.epoch_order`, DistributedSampler's split); the code bank rows
each rank wrote are merged after every epoch, so every rank mines against the whole
training set exactly as a single process would. Each rank holds the decoded training images
(:class:`fgmd.training.batches.ResizedImages`) and encodes the mined positives/negatives of
its own anchors, so the triplet and DAMD terms need no cross-rank
gradient exchange (negatives are *mined* globally but not gathered with gradients). The
effective batch is ``train.batch_size`` x world size. Only rank 0 logs and writes files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from fgmd.config import Config, ConfigError
from fgmd.data.datasets import build_dataset
from fgmd.data.issues import IssueLog
from fgmd.data.preprocess import build_preprocessor
from fgmd.data.transforms import build_transforms
from fgmd.data.validation import check_minable, prepare_training_data
from fgmd.evaluation.evaluate import evaluate_model
from fgmd.models import FGMD, model_from_config
from fgmd.runtime import lock
from fgmd.runtime.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from fgmd.runtime.distributed import barrier, init_distributed, merge_bank_updates
from fgmd.runtime.files import append_line, make_folder, remove_stale_temps, write_atomic
from fgmd.runtime.hints import suggest
from fgmd.runtime.run_log import EPOCHS_FROM, LOG_FILE, keep_epochs
from fgmd.training.batches import (
    ResizedImages,
    TripletBatch,
    TripletBatches,
    centre_crops,
    crop_flip,
    epoch_order,
    normalisers,
)
from fgmd.training.batchnorm import recalibrate_batchnorm
from fgmd.training.mining import mine_triplets, mining_digest
from fgmd.training.objective import FGMDObjective
from fgmd.training.resume import RESUMABLE_CHANGES, inexact_resume_changes, resume_conflicts

logger = logging.getLogger("fgmd.training")

# The files whose presence makes a folder a run (besides any metrics*.json), and its lock file.
RUN_FILES = ("best.pt", "config.yaml", "last.pt", "log.jsonl")
LOCK_FILE = ".fgmd.lock"

# Steps between two progress-bar loss updates (each one reads the loss back from the device).
PROGRESS_EVERY = 10


class StepClock:
    """Wall time per phase of training steps (benchmarks); waits for a CUDA device at each lap."""

    def __init__(self, device: torch.device):
        self.device = device
        self.totals: dict[str, float] = {}
        self.reset()

    def reset(self) -> None:
        """Start timing the next phase now."""
        self._sync()
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        """The phase ``phase`` ended now; add its time."""
        self._sync()
        now = time.perf_counter()
        self.totals[phase] = self.totals.get(phase, 0.0) + now - self._last
        self._last = now

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of every random draw in ``epoch`` of a run seeded with ``seed``."""
    return (seed * 1_000_003 + epoch * 7_919) % (2**31 - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def parameter_groups(model: FGMD, objective: nn.Module, lr: float, module_lr_mult: float) -> list[dict]:
    """Adam parameter groups: everything at ``lr``, or, when ``module_lr_mult != 1``, the FDFSP
    and ADF parameters (:meth:`FGMD.module_parameters`) in a second group at ``lr × module_lr_mult``.
    One group when the multiplier is 1 or the model has no modules, so the optimiser state of
    runs written before the option exists still loads."""
    params = list(model.parameters()) + list(objective.parameters())
    modules = model.module_parameters() if module_lr_mult != 1 else []
    if not modules:
        return [{"params": params}]
    own = {id(p) for p in modules}
    return [
        {"params": [p for p in params if id(p) not in own]},
        {"params": modules, "lr": lr * module_lr_mult},
    ]


def split_validation(
    labels: torch.Tensor, fraction: float, seed: int, groups: Sequence[str] | None = None
) -> tuple[list[int], list[int]]:
    """Stratified (by first label) train/validation split of ``labels [N, L]``; returns index lists.

    ``groups[i]`` (optional): items sharing a non-empty group (MRSSID's scene number, a VAIS
    ship: near-duplicates) go to the same side, so the validation score is not inflated by
    near-copies of training images. A group is stratified by its first item's label; each
    class sends whole units (groups, or single ungrouped items), in a seeded random order, to
    validation while that brings it closer to ``round(fraction * class size)`` items; a group
    larger than that stays in training. At least one unit of every class trains (a class of a
    single unit stays in training). Without groups this is a plain stratified split of items.
    """
    if fraction <= 0:
        return list(range(len(labels))), []
    generator = torch.Generator().manual_seed(seed)
    first_label = labels.argmax(dim=1).tolist()
    units: dict[object, list[int]] = {}
    for index, group in enumerate(groups if groups is not None else [""] * len(labels)):
        units.setdefault(group if group else ("item", index), []).append(index)
    by_label: dict[int, list[list[int]]] = {}
    for members in units.values():  # in order of first appearance
        by_label.setdefault(first_label[members[0]], []).append(members)
    train, val = [], []
    for label in sorted(by_label):
        label_units = by_label[label]
        order = torch.randperm(len(label_units), generator=generator).tolist()
        target = round(fraction * sum(len(u) for u in label_units)) if len(label_units) > 1 else 0
        taken, trained = 0, False
        for rank, position in enumerate(order):
            unit = label_units[position]
            # a unit goes to validation if that brings the count closer to the target (for
            # single items: while below it), unless it is the last chance for the class to train
            closer = taken + len(unit) - target <= target - taken
            if taken < target and closer and (trained or rank < len(order) - 1):
                val += unit
                taken += len(unit)
            else:
                train += unit
                trained = True
    return sorted(train), sorted(val)


class TrainingStep(nn.Module):
    """Model and objective as one module, so one DistributedDataParallel wrapper synchronises both."""

    def __init__(self, model: FGMD, objective: FGMDObjective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(
        self, images: dict[str, torch.Tensor], labels: dict[str, torch.Tensor], batch_size: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Loss, its (detached) terms, and the anchors' codes ``[B, K]`` per modality (role-major inputs ``[3B, ...]``)."""
        outputs = {m: self.model.encoder(m)(x) for m, x in images.items()}
        codes = {m: out.codes.float() for m, out in outputs.items()}
        features = None
        if self.objective.damd is not None:
            features = {m: tuple(f[:batch_size] for f in out.features) for m, out in outputs.items()}
        loss, terms = self.objective(codes, labels, features)
        return loss, terms, {m: c[:batch_size].detach() for m, c in codes.items()}


@dataclass
class FitResult:
    """What :func:`fit` leaves behind."""

    run_dir: Path
    best_epoch: int  # the epoch best.pt was saved after, counted from 1 (as everywhere)
    best_metrics: dict
    last_epoch: int  # = train.epochs


class Trainer:
    """Builds everything a run needs from a :class:`Config` and trains it (see :meth:`fit`)."""

    def __init__(self, config: Config, progress: bool = True):
        config = prepare_training_data(config)  # data checks (errors stop here) + percentile scaling stats
        self.config = config
        self.context, self.device = init_distributed(config.train.device)
        self.progress = progress and self.context.is_main
        self.run_dir = Path(config.out_dir)
        data = config.data
        seed_everything(config.seed)

        train_full = build_dataset(data, data.train_split, build_transforms(data, train=True))
        eval_full = build_dataset(data, data.train_split, build_transforms(data, train=False))
        train_idx, val_idx = split_validation(
            train_full.labels, data.val_fraction, config.seed, [r.group for r in train_full.pairs]
        )
        if data.val_fraction > 0 and not val_idx:
            raise ConfigError(
                f"data.val_fraction={data.val_fraction} leaves no validation pair in the {len(train_full)} training "
                "pairs (every class is too small to give one up): raise data.val_fraction, or set it to 0 to "
                "keep the last epoch instead of selecting on validation"
            )
        self.train_set = train_full.subset(train_idx)
        check_minable(self.train_set.pairs, data.modalities, IssueLog(strict=True))  # after the validation split
        self.val_set = eval_full.subset(val_idx) if val_idx else None
        self.calibration_set = eval_full.subset(train_idx)
        self.class_names = train_full.class_names
        self.modalities = tuple(data.modalities)
        channels = {m: data.modality_config(m).channels for m in self.modalities}
        self.images = ResizedImages(self.train_set, data.resize, channels, self.device, data.num_workers, self.progress)
        self.normalisers = normalisers(data, self.device)

        self.model: FGMD = model_from_config(config)
        self.objective = FGMDObjective(
            config.loss, config.model.bits, train_full.num_classes, self.model.level_channels
        )
        if config.train.sync_bn and self.device.type != "cuda":
            raise ConfigError("train.sync_bn=true needs CUDA devices (SyncBatchNorm does not run on the CPU)")
        if self.context.is_distributed and config.train.sync_bn:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model.to(self.device)
        self.objective.to(self.device)
        self.memory_format = torch.channels_last if config.train.channels_last else torch.contiguous_format
        if config.train.channels_last:
            self.model.to(memory_format=torch.channels_last)
            self.objective.to(memory_format=torch.channels_last)
        if config.train.compile:
            for encoder in self.model.encoders.values():
                encoder.compile()  # in place: state_dict keys are unchanged
        self.step_module: nn.Module = TrainingStep(self.model, self.objective)
        if self.context.is_distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_module = DistributedDataParallel(self.step_module, device_ids=ids)
        self.optimizer = torch.optim.Adam(
            parameter_groups(self.model, self.objective, config.train.lr, config.train.module_lr_mult),
            lr=config.train.lr,
            weight_decay=config.train.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.StepLR(
            self.optimizer, step_size=config.train.lr_step, gamma=config.train.lr_gamma
        )
        n, bits = len(self.train_set), config.model.bits
        generator = torch.Generator().manual_seed(epoch_seed(config.seed, -1))
        # Epoch 0 mines on random codes (docs/DESIGN.md §2); afterwards on the codes cached in training.
        self.bank = {
            m: torch.randint(0, 2, (n, bits), generator=generator).to(torch.int8) * 2 - 1 for m in self.modalities
        }
        self.start_epoch = 0
        self.best_score = float("-inf")
        self.best_epoch = 0  # none yet; epochs count from 1 (fgmd.runtime.run_log)
        self.best_metrics: dict = {}

    # ------------------------------------------------------------------ state
    def state(self, epoch: int) -> dict:
        """Everything :meth:`load_state` needs to continue after ``epoch`` completed epochs."""
        return {
            "config": self.config.to_dict(),
            "class_names": self.class_names,
            "epoch": epoch,
            "epochs_from": EPOCHS_FROM,
            "world_size": self.context.world_size,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "bank": dict(self.bank),
            "best": {"score": self.best_score, "epoch": self.best_epoch, "metrics": self.best_metrics},
        }

    def load_state(self, state: dict) -> None:
        saved = Config.from_run(state["config"]).to_dict()  # keys added since it was written: defaults
        conflicts = resume_conflicts(saved, self.config.to_dict())
        if conflicts:
            raise ConfigError(
                f"cannot resume: the config differs from the checkpoint's in {', '.join(conflicts)} "
                f"(only {', '.join(RESUMABLE_CHANGES)} may change on resume)"
            )
        if self.context.is_main:
            changed = inexact_resume_changes(saved, self.config.to_dict())
            if changed:
                logger.warning(
                    "resuming with a different %s: the run continues, but its result will not be "
                    "bit-identical to an uninterrupted run",
                    ", ".join(changed),
                )
            saved_world = state.get("world_size")  # absent in checkpoints written before it was stored
            if saved_world is not None and saved_world != self.context.world_size:
                logger.warning(
                    "resuming a run trained by %d process(es) with %d: the effective batch size changes "
                    "from %d to %d pairs, so the result will differ from an uninterrupted run",
                    saved_world,
                    self.context.world_size,
                    saved_world * self.config.train.batch_size,
                    self.context.world_size * self.config.train.batch_size,
                )
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.bank = {m: t.clone() for m, t in state["bank"].items()}
        self.start_epoch = state["epoch"]
        best = state["best"]
        self.best_score, self.best_epoch, self.best_metrics = best["score"], best["epoch"], best["metrics"]
        if state.get("epochs_from") != EPOCHS_FROM:  # written when epochs counted from 0
            self.best_epoch += 1
        if self.best_metrics and self.config.eval.select_on in self.best_metrics.get("mean", {}):
            # the score under the selection metric of this config (a run written before tie-aware
            # metrics stored its mean mAP here)
            self.best_score = self.best_metrics["mean"][self.config.eval.select_on]

    # ------------------------------------------------------------------ loop
    def fit(self, resume: bool = False, overwrite: bool = False) -> FitResult:
        """Train for ``train.epochs`` epochs (continuing from ``last.pt`` when ``resume``).

        The run folder is locked for the whole call (see :func:`run_lock`); a folder that
        already holds run files is refused unless ``resume`` or ``overwrite`` (which deletes
        those files first).
        """
        main = self.context.is_main
        with run_lock(self.run_dir) if main else contextlib.nullcontext():
            if main:
                check_run_folder(self.run_dir, resume, overwrite)
                remove_stale_temps(self.run_dir)  # of a killed run: nobody else writes here
            barrier(self.context)
            return self._fit(resume)

    def _fit(self, resume: bool) -> FitResult:
        main = self.context.is_main
        last_path = self.run_dir / "last.pt"
        if resume:
            self.load_state(load_checkpoint(last_path))
        log_path = self.run_dir / LOG_FILE
        if main:
            write_atomic(self.run_dir / "config.yaml", yaml.safe_dump(self.config.to_dict(), sort_keys=False))
            keep_epochs(self.run_dir, self.start_epoch)
        barrier(self.context)

        epochs = self.config.train.epochs
        started = time.perf_counter()
        for epoch in range(self.start_epoch, epochs):
            record = self.train_epoch(epoch)
            is_last = epoch + 1 == epochs
            evaluate_now = (epoch + 1) % self.config.train.eval_every == 0 or is_last
            if evaluate_now or self.val_set is None:
                self.recalibrate()  # BatchNorm statistics for the current weights, before any eval or save
            if self.val_set is not None and evaluate_now:
                metrics = self.validate()
                record["val"] = metrics
                score = metrics["mean"][self.config.eval.select_on]
                improved = score > self.best_score
                if improved:
                    self.best_score, self.best_epoch, self.best_metrics = score, epoch + 1, metrics
                    if main:
                        self.save_best(epoch + 1, metrics, "validation")
                if self.progress:
                    done = epoch + 1 - self.start_epoch
                    remaining = (time.perf_counter() - started) / done * (epochs - epoch - 1)
                    tqdm.write(
                        evaluation_line(
                            epoch + 1,
                            epochs,
                            metrics,
                            self.config.eval.select_on,
                            self.best_score,
                            self.best_epoch,
                            improved,
                            remaining,
                        )
                    )
            elif self.val_set is None:
                self.best_epoch, self.best_metrics = epoch + 1, {}
                if main:
                    self.save_best(epoch + 1, {}, "last")
            if self.config.train.track_test and evaluate_now:
                record["test"] = self.evaluate_test()  # logged only; never used for selection
            if main:
                append_line(log_path, json.dumps(record))
                save_checkpoint(last_path, self.state(epoch + 1))
            barrier(self.context)
        return FitResult(self.run_dir, self.best_epoch, self.best_metrics, epochs)

    def save_best(self, epoch: int, metrics: dict, selected_on: str) -> None:
        """Write ``best.pt`` after epoch ``epoch`` (counted from 1): the model for retrieval, with
        its config and selection metrics."""
        save_checkpoint(
            self.run_dir / "best.pt",
            {
                "config": self.config.to_dict(),
                "class_names": self.class_names,
                "epoch": epoch,
                "epochs_from": EPOCHS_FROM,
                "model": self.model.state_dict(),
                "selected_on": selected_on,
                "metrics": metrics,
            },
        )

    def mine(self, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Hard positives/negatives ``[N]`` per modality for every training pair, from the bank.

        ``positives[m][i]`` is a pair whose ``m`` image serves the other modality's anchor ``i``.
        Identical on every rank.
        """
        generator = torch.Generator().manual_seed(epoch_seed(self.config.seed, epoch))
        a, b = self.modalities
        labels, k = self.train_set.labels, self.config.loss.mining_k
        pos_b, neg_b = mine_triplets(self.bank[a], self.bank[b], labels, k, generator)
        pos_a, neg_a = mine_triplets(self.bank[b], self.bank[a], labels, k, generator)
        return {a: pos_a, b: pos_b}, {a: neg_a, b: neg_b}

    def batches(
        self, epoch: int, positives: dict[str, torch.Tensor], negatives: dict[str, torch.Tensor]
    ) -> TripletBatches:
        """The augmented triplet batches of ``epoch`` for this process (seeded by epoch and rank)."""
        config, context = self.config, self.context
        seed = epoch_seed(config.seed, epoch)
        order = epoch_order(len(self.images), seed, context.rank, context.world_size)
        return TripletBatches(
            self.images,
            positives,
            negatives,
            order,
            config.train.batch_size,
            config.data.image_size,
            config.data.hflip,
            self.normalisers,
            torch.Generator().manual_seed(seed + context.rank),
            self.device,
            self.memory_format,
        )

    def train_epoch(self, epoch: int) -> dict:
        """One epoch: mine, then one optimiser step per batch; returns the epoch's log record.

        Loss terms are summed on the training device and the code bank is updated there; both
        are read back once, at the end of the epoch.
        """
        config, context = self.config, self.context
        start = time.perf_counter()
        positives, negatives = self.mine(epoch)
        mining_s = time.perf_counter() - start
        seed_everything(epoch_seed(config.seed, epoch) + context.rank)  # any other global draw
        batches = self.batches(epoch, positives, negatives)
        self.step_module.train()
        bank = {m: codes.to(self.device) for m, codes in self.bank.items()}
        updated = (
            torch.zeros(len(self.train_set), dtype=torch.bool, device=self.device) if context.is_distributed else None
        )
        names: list[str] = []
        sums = torch.zeros(0, dtype=torch.float64, device=self.device)  # per term: sum of batch mean x batch size
        seen = 0
        start = time.perf_counter()
        bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.train.epochs}", disable=not self.progress, leave=False)
        for number, batch in enumerate(bar):
            terms, anchor_codes = self.train_step(batch)
            for m, codes in anchor_codes.items():
                bank[m][batch.index] = torch.where(codes >= 0, 1, -1).to(torch.int8)
            if updated is not None:
                updated[batch.index] = True
            if not names:
                names = sorted(terms)
                sums = torch.zeros(len(names), dtype=torch.float64, device=self.device)
            size = len(batch.index)
            sums.add_(torch.stack([terms[n] for n in names]).double(), alpha=size)
            seen += size
            if self.progress and number % PROGRESS_EVERY == 0:  # the only host read inside the epoch
                bar.set_postfix(loss=f"{float(terms['total']):.3f}")
        elapsed = time.perf_counter() - start
        sums = torch.cat([sums, sums.new_tensor([seen])])
        if context.is_distributed:
            torch.distributed.all_reduce(sums)
        self.bank = {m: codes.cpu() for m, codes in bank.items()}
        if updated is not None:
            updated = updated.cpu()
            self.bank = {m: merge_bank_updates(codes, updated, context) for m, codes in self.bank.items()}
        rates = [group["lr"] for group in self.optimizer.param_groups]
        self.scheduler.step()
        totals = sums.cpu().tolist()
        total_seen = totals[-1]
        record = {
            "epoch": epoch + 1,  # counted from 1, as on the progress bar (fgmd.runtime.run_log)
            "lr": rates[0],
            **({"lr_modules": rates[1]} if len(rates) > 1 else {}),  # train.module_lr_mult != 1
            "time_s": round(elapsed, 3),
            "mining_s": round(mining_s, 3),
            "pairs_per_s": round(total_seen / elapsed, 2),
            "mining_digest": mining_digest({**positives, **{f"{m}_neg": n for m, n in negatives.items()}}),
        }
        record.update({name: value / max(total_seen, 1.0) for name, value in zip(names, totals)})
        if context.is_distributed:
            digests: list[str] = [""] * context.world_size
            torch.distributed.all_gather_object(digests, record["mining_digest"])
            if len(set(digests)) != 1:
                raise RuntimeError(f"processes mined different triplets in epoch {epoch}: {digests}")
        return record

    def train_step(
        self, batch: TripletBatch, clock: StepClock | None = None
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Forward both branches on ``3B`` images each, backward, step.

        Returns the loss terms (detached, on the device) and the anchors' codes ``[B, K]`` per
        modality. ``clock`` (benchmarks) is told when each phase ends.
        """
        size = len(batch.index)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.train.amp):
            loss, terms, anchor_codes = self.step_module(batch.images, batch.labels, size)
        if clock is not None:
            clock.lap("forward")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clock is not None:
            clock.lap("backward")
        self.optimizer.step()
        if clock is not None:
            clock.lap("optimiser")
        return terms, anchor_codes

    def recalibrate(self) -> None:
        """Re-estimate BatchNorm statistics on training pairs (``train.bn_recalibration_batches``).

        The pairs are a seeded random subset, centre-cropped as for evaluation; with more
        pairs than one batch, an incomplete last batch is left out.
        """
        train = self.config.train
        count = min(len(self.images), train.batch_size * train.bn_recalibration_batches)
        if count == 0:
            return  # keep the running averages of training
        chosen = torch.randperm(len(self.images), generator=torch.Generator().manual_seed(self.config.seed))[:count]
        size = train.batch_size
        stop = count - count % size if count > size else count
        recalibrate_batchnorm(self.model, (self.eval_batch(chosen[i : i + size]) for i in range(0, stop, size)))

    def eval_batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training pairs ``index [B]`` per modality, centre-cropped and normalised: ``[B, C, S, S]``."""
        size = self.config.data.image_size
        crops = centre_crops(len(index), self.images.resize - size)
        out = {}
        for m in self.modalities:
            source = self.images.images[m]
            picked = source[index.to(source.device)].to(self.device)
            out[m] = self.normalisers[m](crop_flip(picked, crops, size)).contiguous(memory_format=self.memory_format)
        return out

    def validate(self) -> dict:
        """Cross-modal metrics on the validation pairs (each modality queries the other)."""
        if self.val_set is None:
            raise ValueError("this run has no validation split (data.val_fraction = 0)")
        sets = {m: self.val_set.images(m, build_preprocessor(self.config.data, m)) for m in self.modalities}
        return evaluate_model(
            self.model, sets, sets, self.config.eval, self.device, self.config.data.num_workers, context=self.context
        )

    def evaluate_test(self) -> dict:
        """Metrics on the test split (queries vs database), for ``train.track_test`` logging only.

        The published FSISR/FG-MD scripts pick their best epoch by this number, which is
        optimistic; ``best.pt`` here is always selected on validation.
        """
        if getattr(self, "_test_sets", None) is None:
            data = self.config.data
            inputs = {m: build_preprocessor(data, m) for m in self.modalities}
            query_split = build_dataset(data, data.query_split)
            db_split = (
                query_split if data.database_split == data.query_split else build_dataset(data, data.database_split)
            )
            self._test_sets = (
                {m: query_split.images(m, inputs[m]) for m in self.modalities},
                {m: db_split.images(m, inputs[m]) for m in self.modalities},
            )
        queries, database = self._test_sets
        return evaluate_model(
            self.model,
            queries,
            database,
            self.config.eval,
            self.device,
            self.config.data.num_workers,
            context=self.context,
        )


def evaluation_line(
    epoch: int,
    epochs: int,
    metrics: dict,
    key: str,
    best: float,
    best_epoch: int,
    improved: bool,
    remaining_s: float,
) -> str:
    """The line printed after each validation of epoch ``epoch`` of ``epochs`` (``key``: the
    selection metric, e.g. ``map_tie``; ``best_epoch``: the epoch of ``best``). Epochs count
    from 1 here as everywhere (progress bars, ``log.jsonl``, checkpoints)."""
    directions = ", ".join(f"{name} {values[key]:.4f}" for name, values in metrics["directions"].items())
    best_text = "new best" if improved else f"best {best:.4f} at epoch {best_epoch}"
    eta = f", ETA {int(remaining_s // 60)}m{int(remaining_s % 60):02d}s" if epoch < epochs else ""
    return f"epoch {epoch}/{epochs}: validation {key} {metrics['mean'][key]:.4f} ({directions}); {best_text}{eta}"


def fit(config: Config, resume: bool = False, progress: bool = True, overwrite: bool = False) -> FitResult:
    """Train FG-MD as configured; the run directory is ``config.out_dir``.

    The folder is locked and checked (see :meth:`Trainer.fit`) before the data is prepared,
    so a refused run fails at once.
    """
    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 locks and checks the folder
        return Trainer(config, progress=progress).fit(resume=resume, overwrite=overwrite)
    run_dir = Path(config.out_dir)
    created = not run_dir.exists()
    try:
        with run_lock(run_dir):
            if not overwrite:  # refuse before the slow data preparation; overwrite deletes only once training starts
                check_run_folder(run_dir, resume, overwrite=False)
            return Trainer(config, progress=progress).fit(resume=resume, overwrite=overwrite)
    finally:
        if created:  # a run that failed before writing anything leaves no empty folder behind
            with contextlib.suppress(OSError):
                run_dir.rmdir()


class RunExistsError(FileExistsError):
    """The run folder already holds a run and the caller neither resumes nor overwrites it."""


def run_files(run_dir: Path) -> list[str]:
    """Names of the files in ``run_dir`` that make it a run (sorted; empty for a new folder)."""
    if not run_dir.is_dir():
        return []
    return sorted(
        p.name
        for p in run_dir.iterdir()
        if p.name in RUN_FILES or (p.name.startswith("metrics") and p.suffix == ".json")
    )


def never_trained(run_dir: Path) -> bool:
    """True when ``run_dir`` holds run files but no finished epoch: only ``config.yaml`` and an
    empty ``log.jsonl`` (a run stopped during its first epoch). Callers that own the folder
    (demo, experiments) start such a run again with ``overwrite=True``."""
    present = run_files(run_dir)
    log = run_dir / "log.jsonl"
    return (
        bool(present)
        and set(present) <= {"config.yaml", "log.jsonl"}
        and (not log.exists() or not log.read_text().strip())
    )


def run_lock(run_dir: Path):
    """Context manager holding the lock of run folder ``run_dir`` (created if missing)."""
    make_folder(run_dir)
    return lock.hold(run_dir / LOCK_FILE, f"run folder {run_dir}")


def check_run_folder(run_dir: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to start a run in a folder holding one; ``overwrite`` deletes its run files.

    Raises:
        CheckpointError: ``resume`` but there is no ``last.pt`` to resume from.
        RunExistsError: run files are present and neither ``resume`` nor ``overwrite``.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    present = run_files(run_dir)
    if resume:
        if "last.pt" not in present:
            held = f" (it holds {', '.join(present)})" if present else ""
            raise CheckpointError(f"cannot resume: {run_dir} holds no last.pt{held}")
        return
    if present and not overwrite:
        raise suggest(
            RunExistsError(
                f"{run_dir} already holds a run ({', '.join(present)}); resume it, overwrite it or choose another out_dir"
            ),
            "resume",
            "overwrite",
        )
    for name in present:
        (run_dir / name).unlink()
