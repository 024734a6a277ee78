"""The one training loop the model jobs share, as the Flax examples have it: each model gives a
small job (its data, step and evaluation, and the configs its files carry) and the loop does the
rest: resume from a checkpoint or start from given weights, prefetch the next batch on one data
thread, stop at a step count or a wall-clock budget, evaluate every ``eval_every`` steps (and at
the end), keep the weights at the best evaluation figure, and checkpoint after each evaluation.

Files (``out`` is the shipped weights' path, :func:`roomtone.models.weights.save_weights`):

- ``out`` (``.npz`` with its ``.json``): the parameters at the best figure so far, with the job's
  :meth:`Job.weights_config`.
- ``checkpoints/NAME.ckpt.npz`` beside ``out``, with its ``.json``: the parameters after the latest
  evaluation, the job's :meth:`Job.checkpoint_config` and the loop's ``step``, ``best`` and
  ``history`` (``[step, mean training loss since the last evaluation, *the job's record]`` per
  evaluation; ``["init", path]`` first for a run started from weights). No pickle, and no
  optimiser state: a resumed run warms up again.

A job (duck-typed; see :class:`Job`) only says what differs between models::

    class Job:
        def batch(self): ...                          # one training batch (called on the data thread)
        def step(self, model, optimizer, batch): ...  # one optimiser step, returns the loss
        def evaluate(self, model): ...                # -> Evaluation
        def arrays(self, model): ...                  # the parameters as written (e.g. half precision)
        def weights_config(self, model, step, evaluation, history): ...
        def checkpoint_config(self, model, step, evaluation, history): ...

    model, step, history, meta = start(new_model, out=..., resume=..., init=...)
    result = train(Loop(out=..., steps=...), job, model, adamw(model, ...), start_step=step, history=history)
"""

import dataclasses
import json
import math
import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple, Protocol

import numpy as np


class Evaluation(NamedTuple):
    """What a job's evaluation gives the loop: ``score`` selects the weights (see
    :attr:`Loop.maximise`), ``record`` follows ``[step, loss]`` in the history, ``text`` follows
    ``eval step N:`` in the log (default: ``record`` as JSON), ``figures`` is for the job's configs."""

    score: float
    record: list
    text: str = ""
    figures: Any = None


class Job(Protocol):
    def batch(self): ...

    def step(self, model, optimizer, batch) -> float: ...

    def evaluate(self, model) -> Evaluation: ...

    def arrays(self, model) -> dict: ...

    def weights_config(self, model, step, evaluation, history) -> dict: ...

    def checkpoint_config(self, model, step, evaluation, history) -> dict: ...


@dataclasses.dataclass(frozen=True)
class Loop:
    """The loop's settings. ``steps``: the step the run stops at (counted from the start of the
    first run, so a resumed run goes on to it); ``minutes``: the wall-clock budget of this run;
    ``maximise``: whether a higher score is better; ``evaluate_first``: evaluate (and keep as the
    best so far) the starting weights before the first step."""

    out: str
    steps: int
    minutes: float = math.inf
    eval_every: int = 250
    log_every: int = 50
    maximise: bool = True
    evaluate_first: bool = False


class Result(NamedTuple):
    model: Any
    step: int
    best: float
    history: list


def checkpoint_path(out):
    """``checkpoints/NAME.ckpt.npz`` beside the weights path ``out``."""
    folder, name = os.path.split(os.path.abspath(out))
    return os.path.join(folder, "checkpoints", os.path.splitext(name)[0] + ".ckpt.npz")


def start(new_model, *, out, resume=False, init=None):
    """The model a run starts from: the checkpoint of ``out`` when ``resume`` and it exists, else
    the weights ``init`` when given, else ``new_model()``. Returns ``(model, step, history, meta)``,
    ``meta`` the checkpoint's config (None when not resumed). ``new_model`` builds the model the
    files fit (:func:`roomtone.models.weights.build`)."""
    from roomtone.models import weights

    ckpt = checkpoint_path(out)
    if resume and os.path.exists(ckpt):
        meta = weights.load_config(ckpt)
        model = weights.build(new_model, weights.load_arrays(ckpt), path=ckpt)
        return model, int(meta["step"]), list(meta["history"]), meta
    if init:
        return weights.build(new_model, weights.load_arrays(init), path=init), 0, [["init", init]], None
    return new_model(), 0, [], None


def adamw(model, *, lr, warmup, decay_steps, end_lr, weight_decay):
    """The optimiser every job uses: gradients clipped at global norm 1, AdamW with a linear
    warm-up over ``warmup`` steps to ``lr`` and a cosine decay to ``end_lr`` over ``decay_steps``."""
    import optax
    from flax import nnx

    schedule = optax.warmup_cosine_decay_schedule(0.0, lr, warmup, max(int(decay_steps), 1), end_lr)
    return nnx.Optimizer(model, optax.chain(optax.clip_by_global_norm(1.0),
                                            optax.adamw(schedule, weight_decay=weight_decay)), wrt=nnx.Param)


class Prefetch:
    """``make()``'s results one ahead on one data thread, so the next batch is made while the step
    runs; the thread is shut down on leaving the ``with`` block (the batch in flight is finished
    and dropped). Only ``make`` runs on that thread, so a job's random generator stays in order."""

    def __init__(self, make):
        self.make = make
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batches")
        self.upcoming = None

    def __enter__(self):
        self.upcoming = self.pool.submit(self.make)
        return self

    def next(self):
        made = self.upcoming.result()
        self.upcoming = self.pool.submit(self.make)
        return made

    def __exit__(self, *exc):
        self.pool.shutdown(wait=True, cancel_futures=True)
        return False


class _Run:
    """One run's state (step, best, history, losses) and the evaluation that saves the files."""

    def __init__(self, loop, job, model, optimizer, start_step, best, history):
        self.loop, self.job, self.model, self.optimizer = loop, job, model, optimizer
        self.start_step = self.step = start_step
        self.best = (-math.inf if loop.maximise else math.inf) if best is None else best
        self.history = list(history or [])
        self.losses = []
        self.ckpt = checkpoint_path(loop.out)
        os.makedirs(os.path.dirname(self.ckpt), exist_ok=True)  # and the weights' folder above it

    def better(self, score):
        return score > self.best if self.loop.maximise else score < self.best

    def evaluate(self):
        from roomtone.models import weights

        job, model, step = self.job, self.model, self.step
        evaluation = job.evaluate(model)
        recent = self.losses[-self.loop.eval_every:]
        self.history.append([step, round(float(np.mean(recent)), 5) if recent else 0.0, *evaluation.record])
        print(f"eval step {step}: " + (evaluation.text or json.dumps(evaluation.record)), flush=True)
        if self.better(evaluation.score):
            self.best = evaluation.score
            weights.save_weights(self.loop.out, job.arrays(model),
                                 job.weights_config(model, step, evaluation, self.history))
        weights.save_weights(self.ckpt, job.arrays(model), {
            **job.checkpoint_config(model, step, evaluation, self.history),
            "step": step, "best": self.best, "history": self.history})

    def train(self):
        loop = self.loop
        started = time.time()
        if loop.evaluate_first:
            self.evaluate()
        with Prefetch(self.job.batch) as batches:
            while self.step < loop.steps and time.time() - started < loop.minutes * 60:
                self.losses.append(float(self.job.step(self.model, self.optimizer, batches.next())))
                self.step += 1
                if self.step % loop.log_every == 0:
                    rate = (self.step - self.start_step) / (time.time() - started)
                    print(f"step {self.step} loss {np.mean(self.losses[-loop.log_every:]):.4f} "
                          f"({rate:.2f} steps/s)", flush=True)
                if self.step % loop.eval_every == 0:
                    self.evaluate()
        if not self.history or self.history[-1][0] != self.step:
            self.evaluate()
        return Result(self.model, self.step, self.best, self.history)


def train(loop, job, model, optimizer, *, start_step=0, best=None, history=None):
    """Train ``model`` with ``optimizer`` by ``job`` from ``start_step`` (see the module) until
    ``loop.steps`` or ``loop.minutes``; ``best``: the best score so far (a resumed run's), None for
    none. Returns a :class:`Result` (the model is trained in place)."""
    return _Run(loop, job, model, optimizer, start_step, best, history).train()


def with_lineage(config, init_config, command, steps, note="", *,
                 union=("train_song_ids", "val_song_ids", "val_speakers", "val_music"), carry=("renders",)):
    """``config`` of weights fine-tuned from ``init_config``'s: each ``data`` list in ``union`` is
    the union of both runs' (a held-out item stays held out in each), the licences merged, each
    ``data`` entry in ``carry`` of the earlier run kept as ``earlier_<entry>``, and this run
    appended to the earlier runs (``training.runs``). Raises ValueError when a run's validation
    song was another's training song."""
    out = json.loads(json.dumps(config))
    before, now = init_config.get("data", {}), out["data"]
    for key in union:
        now[key] = sorted(set(now.get(key, [])) | set(before.get(key, [])))
    if set(now.get("train_song_ids", [])) & set(now.get("val_song_ids", [])):
        raise ValueError("a validation song of one run was a training song of another")
    merged = json.loads(json.dumps(before.get("licences", {})))
    for key, value in now.get("licences", {}).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    now["licences"] = merged
    for key in carry:
        if key in before:
            now["earlier_" + key] = before[key]
    runs = list(init_config.get("training", {}).get("runs", []))
    runs.append({"command": command, "steps": steps, "note": note})
    out["training"]["runs"] = runs
    return out
