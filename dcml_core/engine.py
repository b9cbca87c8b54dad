"""One training engine for the margin baseline, DiVA and DCML (no Ray, no tracking).

Usage::

    engine = Engine(cfg)                    # checks the data, builds model, objective, optimiser, schedule
    for _ in range(cfg.schedule.n_epochs - engine.epoch):
        train = engine.train_epoch()        # sample, mine, loss, step; the LR schedule steps once per epoch
        val = engine.evaluate("val")        # {"val/recall_at_1": ..., ...}
        engine.save(directory)              # full state; Engine.restore(directory) resumes exactly
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dcml_core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from dcml_core.collapse import SPREAD, embedding_spread
from dcml_core.config import ExperimentConfig
from dcml_core.data_bundle import DataBundle, Loaders, available_cores, prepare_data
from dcml_core.evaluation import (
    combine_heads,
    compute_metrics,
    evaltype_key,
    expand_evaltypes,
    parse_evaltype,
)
from dcml_core.metric_names import metric_key
from dcml_core.models import build_model
from dcml_core.objective import STATE_FORMAT, TrainingAccess, build_objective, upgrade_state
from dcml_core.oom import DeviceOutOfMemoryError, OomRetry  # noqa: F401 - DeviceOutOfMemoryError re-exported
from dcml_core.optim import build_optimizer, build_scheduler
from dcml_core.precision import amp_dtype, autocast, load_scaler_state, make_scaler, set_deterministic
from dcml_core.seeding import resolve_device, rng_state, seed_everything, set_rng_state

_SHARE = "give each trial a larger GPU share (--gpus-per-trial)"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite."""


class Engine:
    """Owns data, model, objective, optimiser and schedule of one run; ``epoch`` counts finished epochs.

    ``cpus``: the cores the run may use (loader workers, faiss threads; default: all of this process's);
    ``oom_retries``/``oom_wait_s``: retries after a CUDA out-of-memory error (for a shared GPU, see
    :mod:`dcml_core.oom`; default: none, the first one is final).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        device: str | torch.device | None = None,
        data: DataBundle | None = None,
        progress: Callable[[str], None] | None = None,
        cpus: int | None = None,
        oom_retries: int = 0,
        oom_wait_s: float = 30.0,
    ) -> None:
        self.cfg = cfg
        self.device = resolve_device(str(device) if device is not None else cfg.device)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = amp_dtype(cfg.amp, cfg.amp_dtype, self.device)  # a bad choice fails before any data
        self.progress = progress or (lambda msg: None)
        self.cpus = cpus or available_cores()
        self.data = data if data is not None else prepare_data(cfg)  # all data checks before any model
        seed_everything(cfg.seed, cfg.deterministic)
        set_deterministic(cfg.deterministic, self.cuda)
        m, pretrained = cfg.model, cfg.model.resolved_pretrained(cfg.data.dataset)
        self.model = build_model(method=m.method, arch=m.arch, embed_dim=m.embed_dim, features=m.features,
                                 pretrained=pretrained, ensemble_num=m.ensemble_num,
                                 compos_num=m.compos_num).to(self.device)  # fmt: skip
        if self.cuda and cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.objective = build_objective(cfg, self.model, self.data.n_train_classes, self.model.feature_dim)
        self.objective.to(self.device)
        self.optimizer = build_optimizer(cfg.optim, self.model, self.objective.param_groups())
        self.scheduler = build_scheduler(cfg.schedule, self.optimizer)
        self.scaler = make_scaler(self.device, self.amp_dtype)
        self.loaders = Loaders(cfg, self.data, self.device, self.cpus)
        sampler = self.loaders.sampler  # with the RNGs, what a unit of work changes before it runs out of memory
        self.oom = OomRetry(oom_retries, oom_wait_s, lambda: (rng_state(), sampler.state_dict()),
                            lambda s: (set_rng_state(s[0]), sampler.load_state_dict(s[1])), self.progress)  # fmt: skip
        self.epoch = 0
        self.timings = {"train_s": 0.0, "eval_s": 0.0}

    # ------------------------------------------------------------------ training
    def _autocast(self):
        return autocast(self.device, self.amp_dtype)

    def _to_device(self, images: Tensor) -> Tensor:
        images = images.to(self.device, non_blocking=True)
        if self.cuda and self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def train_epoch(self) -> dict[str, float]:
        """One epoch: the terms' epoch hooks (queue pre-fill, re-clustering), then sample, mine, loss, step."""
        start = time.perf_counter()
        access = TrainingAccess(self._train_images, self._train_features, self._autocast)
        fix, hooks = f"lower data.batch_size (--bs) or {_SHARE}", f"epoch {self.epoch + 1}'s epoch hooks on {self.device}"
        self.objective.before_epoch(self.epoch, access, run=lambda term, hook: self.oom.run(hook, hooks, fix))
        self.model.train()
        self.objective.train()
        sums: dict[str, float] = {}
        n_iter = 0
        loader = self.loaders.train_loader()
        what = f"training with batch size {self.cfg.data.batch_size} on {self.device}"
        for it, batch in enumerate(loader):
            loss, terms, keys = self.oom.run(lambda b=batch, i=it: self._backward(b, i), what, fix)
            OomRetry().run(lambda k=keys: self._step(k), f"the optimiser step of {what}", fix)  # not repeatable
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for name, value in terms.items():
                sums[f"loss_{name}"] = sums.get(f"loss_{name}", 0.0) + value
            n_iter += 1
            if (it + 1) % 20 == 0:
                self.progress(f"epoch {self.epoch + 1} iteration {it + 1}/{len(loader)} loss {loss.item():.4f}")
        lr = self.optimizer.param_groups[0]["lr"]
        self.scheduler.step()  # once per epoch; evaluation does not depend on the LR, so order is immaterial
        self.epoch += 1
        elapsed = time.perf_counter() - start
        self.timings["train_s"] += elapsed
        out = {f"train/{k}": v / max(n_iter, 1) for k, v in sums.items()}
        out.update({"train/lr": lr, "train/epoch_time_s": elapsed, "epoch": self.epoch})
        return out

    def _backward(self, batch: list[Tensor], it: int) -> tuple[Tensor, dict[str, float], Tensor | None]:
        """Forward, loss and backward of one batch: (loss, terms, keys); repeatable (gradients are reset)."""
        images, labels, indices = self._to_device(batch[0]), batch[1].to(self.device), batch[2]
        with self._autocast():
            heads, feats, aux = self.model(images)
            keys = self.objective.keys(self._to_device(batch[3])) if len(batch) > 3 else None
        loss, terms = self.objective(heads, feats, aux, labels, indices, keys)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.epoch + 1}, iteration {it + 1} "
                f"(terms: {terms}); lower the learning rate (optim.lr={self.cfg.optim.lr}) or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        return loss, terms, keys

    def _step(self, keys: Tensor | None) -> None:
        """Optimiser step, scaler update and the terms' after-step hooks (momentum update, enqueue)."""
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.objective.after_step(self.model, keys)

    def _train_images(self) -> Iterator[Tensor]:
        """View A of one pass of the training sampler, on the device."""
        for batch in self.loaders.train_pass():
            yield self._to_device(batch[0])

    @torch.no_grad()
    def _train_features(self) -> np.ndarray:
        """(N_train, F) pooled features of every training image with the training augmentation, eval mode."""
        self.model.eval()
        feats = np.empty((len(self.data.train), self.model.feature_dim), dtype=np.float32)
        for batch in self.loaders.eval_loader("train", train_transform=True):
            with self._autocast():
                _, f, _ = self.model(self._to_device(batch[0]))
            feats[batch[2].numpy()] = f.float().cpu().numpy()
        return feats

    # ------------------------------------------------------------------ evaluation
    def embed(self, split: str) -> tuple[dict[str, Tensor], Tensor]:
        """Normalised head embeddings (CPU, float32, computed without autocast) and labels of every image of a
        split."""
        fix = f"lower eval.batch_size or {_SHARE}"
        what = f"evaluation with batch size {self.cfg.eval.batch_size} on {self.device}"
        return self.oom.run(lambda: self._embed(split), what, fix)

    @torch.no_grad()
    def _embed(self, split: str) -> tuple[dict[str, Tensor], Tensor]:
        self.model.eval()
        chunks: dict[str, list[Tensor]] = {}
        labels: list[Tensor] = []
        subemb = self.cfg.model.method == "dcml" and self.cfg.model.eval_on == "subembeddings"
        for batch in self.loaders.eval_loader(split):
            heads, _, aux = self.model(self._to_device(batch[0]))  # float32: the reference protocol
            if subemb:
                heads = {"subembeddings": F.normalize(aux["subembeddings"].float(), dim=-1)}
            for name, h in heads.items():
                chunks.setdefault(name, []).append(h.float().cpu())
            labels.append(batch[1])
        return {k: torch.cat(v) for k, v in chunks.items()}, torch.cat(labels)

    def evaltypes(self) -> list[str]:
        """Expanded evaltypes; the first is the primary one (its metrics carry no evaltype suffix)."""
        if self.cfg.model.method == "dcml" and self.cfg.model.eval_on == "subembeddings":
            return ["subembeddings"]
        return expand_evaltypes(self.cfg.eval.evaltypes, self.cfg.model.features, self.cfg.data.dataset)

    def evaluate(self, split: str, metrics: tuple[str, ...] | None = None) -> dict[str, float]:
        """Metrics of every evaltype on ``split`` ('val' for tuning, 'test' for reporting only); ``metrics``: a
        subset of ``eval.metrics`` (default: all of them; see ``EvalConfig.epoch_metrics``)."""
        if split not in ("val", "test", "train"):
            raise ValueError(f"unknown split {split!r}; expected 'val', 'test' or 'train'")
        records = {"train": self.data.train, "val": self.data.val, "test": self.data.test}[split]
        if not records:
            return {}
        start = time.perf_counter()
        heads, labels = self.embed(split)
        nmi_k = self.cfg.eval.nmi_k or (
            len(set(labels.tolist())) if split == "val" else self.data.reference_nmi_k
        )
        eval_device = str(self.device) if self.cfg.eval.device == "auto" else self.cfg.eval.device
        out: dict[str, float] = {}
        for i, spec in enumerate(self.evaltypes()):
            if spec == "subembeddings":
                emb = heads["subembeddings"]
            else:
                names, weights = parse_evaltype(spec)
                emb = combine_heads(heads, names, weights)
            values = self.oom.run(
                lambda emb=emb: compute_metrics(
                    emb,
                    labels,
                    recall_ks=self.cfg.eval.resolved_recall_ks(self.cfg.data.dataset),
                    nmi_k=min(nmi_k, len(labels)),
                    metrics=self.cfg.eval.metrics if metrics is None else metrics,
                    device=eval_device,
                    max_threads=self.cpus,
                ),
                f"the kNN / k-means of {split} ({len(labels)} embeddings) on {eval_device}",
                f"set eval.device 'cpu' or {_SHARE}",
            )
            suffix = None if i == 0 else evaltype_key(spec)
            out.update({metric_key(split, name, suffix): float(v) for name, v in values.items()})
            if i == 0:
                out[metric_key(split, SPREAD)] = embedding_spread(emb)  # collapse is named, not scored
        elapsed = time.perf_counter() - start
        self.timings["eval_s"] += elapsed
        out[f"{split}/eval_time_s"] = elapsed
        return out

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly (tensors and plain values only)."""
        return {
            "format": STATE_FORMAT,
            "epoch": self.epoch,
            "model": self.model.state_dict(),
            "objective": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "sampler": self.loaders.sampler.state_dict(),
            "rng": rng_state(),
            "timings": dict(self.timings),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`; states of checkpoints written before the terms list are upgraded."""
        owners = ["model", *self.objective.group_owners()]
        state = upgrade_state(state, owners, list(self.objective.state_dict()))
        self.model.load_state_dict(state["model"])
        self.objective.load_state_dict(state["objective"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        load_scaler_state(self.scaler, state["scaler"])
        self.loaders.sampler.load_state_dict(state["sampler"])
        set_rng_state(state["rng"])
        self.timings = dict(state["timings"])
        self.epoch = int(state["epoch"])

    def save(self, directory: str | Path, durable: bool = True) -> Path:
        """Write a checkpoint directory (state + configuration); see :func:`save_checkpoint` for ``durable``."""
        return save_checkpoint(directory, self.state_dict(), self.cfg.to_json(), durable=durable)

    @classmethod
    def restore(
        cls,
        directory: str | Path,
        device: str | torch.device | None = None,
        progress: Callable[[str], None] | None = None,
        cfg: ExperimentConfig | None = None,
        **options: Any,
    ) -> Engine:
        """A new engine in the exact state saved in ``directory`` (``options``: the constructor's ``cpus``,
        ``oom_retries``, ``oom_wait_s``), on any device: a checkpoint written on the CPU restores on CUDA and the
        reverse. A state that does not load into the engine raises :class:`CheckpointError`."""
        state, cfg_dict = load_checkpoint(directory)
        cfg = cfg or ExperimentConfig.from_dict(cfg_dict)
        engine = cls(cfg, device=device, progress=progress, **options)
        try:
            engine.load_state_dict(state)
        except Exception as err:  # noqa: BLE001 - a mismatched or damaged state, whatever torch raises for it
            raise CheckpointError(f"checkpoint {directory} does not load: {type(err).__name__}: {err}") from err
        return engine
