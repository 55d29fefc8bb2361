"""The metric records of a training run: one record per logging step, written as
``metrics.jsonl`` and ``metrics.csv`` in the run directory (:mod:`rnnjax.training.runner`).

A record holds ``step``; for every metric its mean over seeds and ``<name>_std`` (the
standard deviation over seeds), with the per-seed values under ``seeds`` when there
are several; ``baseline`` and ``eval_loss_over_baseline`` when the task has a
baseline; ``steps_per_sec`` and ``time`` (:data:`TIMING_KEYS`, not deterministic).

Names say where a metric is measured: ``train_*`` on the training batches of the
logging window (``train_loss``, ``train_grad_norm``: means over the window's steps),
``eval_*`` on the held-out batch at the logging step (``eval_loss``, ``eval_accuracy``,
``eval_grad_norm_<group>``: the gradient norm of one top-level param group on that
batch, so it is not comparable with ``train_grad_norm``; ``eval_credit_*``: the credit
measurement on that batch, null where it underflowed).  Tasks measured in bits
(the char-LM) also get ``train_bpc`` and ``eval_bpc`` (``loss / ln 2``).
:func:`load_history` reads records written before this naming (``loss``,
``grad_norm``, ``grad_norm_<group>``) under the new names.
"""

from __future__ import annotations

import csv
import json
import math
import os
import warnings

import numpy as np

from rnnjax.io.outputs import atomic_open

# Metrics whose nan means "underflowed" (rnnjax.analysis.credit_metrics): written as
# null, the mean over seeds null when any seed's is.
UNDERFLOW_PREFIX = "eval_credit_"

# Keys of a record that are not deterministic (timings).
TIMING_KEYS = ("steps_per_sec", "time")

# What the console calls a task's loss (``loss`` for a task not listed); "bpc" tasks
# are printed in bits per character.
LOSS_NAMES = {"copy": "CE", "smnist": "CE", "pmnist": "CE", "adding": "MSE", "charlm": "bpc"}


def renamed(key: str) -> str:
    """The current name of a record key written under an older name."""
    for old, new in (("loss", "train_loss"), ("grad_norm", "train_grad_norm")):
        if key == old or key == old + "_std":
            return new + key[len(old):]
    if key.startswith("grad_norm_"):
        return "eval_" + key
    return key


def _upgrade(rec: dict) -> dict:
    out = {renamed(k): v for k, v in rec.items()}
    if isinstance(out.get("seeds"), dict):
        out["seeds"] = {renamed(k): v for k, v in out["seeds"].items()}
    return out


def make_record(step, values: dict, baseline, rate, elapsed, n_seeds) -> dict:
    """One metrics record from ``values`` (``name -> (seeds,)`` numbers)."""
    rec = {"step": int(step)}
    per_seed = {}
    for k, v in values.items():
        v = np.asarray(v, np.float64).reshape(n_seeds)
        if k.startswith(UNDERFLOW_PREFIX) and np.isnan(v).any():
            # a credit measurement that underflowed is null, not a number
            rec[k] = rec[f"{k}_std"] = None
            per_seed[k] = [None if np.isnan(x) else float(x) for x in v]
            continue
        rec[k] = float(v.mean())
        rec[f"{k}_std"] = float(v.std())
        per_seed[k] = [float(x) for x in v]
    if "eval_bpc" in rec and "train_loss" in rec:
        rec["train_bpc"] = rec["train_loss"] / math.log(2)
        rec["train_bpc_std"] = rec["train_loss_std"] / math.log(2)
    if baseline is not None:
        rec["baseline"] = float(baseline)
        rec["eval_loss_over_baseline"] = rec["eval_loss"] / float(baseline)
    rec["steps_per_sec"] = float(rate)
    rec["time"] = float(elapsed)
    if n_seeds > 1:
        rec["seeds"] = per_seed
    return rec


def format_loss(loss: float, baseline=None, name: str = "loss") -> str:
    """``CE 0.3611 (1.04 x baseline 0.347)``: a loss and its ratio to the baseline."""
    text = f"{name} {loss:.4f}"
    if baseline is not None and baseline:
        text += f" ({loss / baseline:.2f} x baseline {baseline:.3f})"
    return text


def format_mean_std(values, digits: int = 4, spec: str | None = None) -> str:
    """``mean ± std`` of the per-seed ``values`` (population std, as the records);
    the mean alone for one value.  Numbers as ``f"{x:.{digits}f}"``, or with the format
    ``spec`` when given (e.g. ``".1e"``)."""
    v = np.asarray(values, np.float64).reshape(-1)
    spec = spec or f".{digits}f"
    if v.size == 1:
        return f"{v[0]:{spec}}"
    return f"{v.mean():{spec}} ± {v.std():{spec}}"


def format_record(rec: dict, task: str = "") -> str:
    """One line of a record for the terminal, e.g.
    ``step 400  train CE 0.3702  eval CE 0.3611 (1.04 x baseline 0.347)  acc 0.212``;
    ``task`` picks the loss's name (:data:`LOSS_NAMES`); char-LM losses print in bits
    per character."""
    name = LOSS_NAMES.get(task, "loss")
    scale = 1 / math.log(2) if name == "bpc" else 1.0
    baseline = rec.get("baseline")
    parts = [f"step {rec['step']:6d}", "train " + format_loss(rec["train_loss"] * scale,
                                                              name=name),
             "eval " + format_loss(rec["eval_loss"] * scale,
                                   None if baseline is None else baseline * scale, name)]
    if "eval_accuracy" in rec:
        parts.append(f"acc {rec['eval_accuracy']:.3f}")
    parts.append(f"{rec['steps_per_sec']:.1f} steps/s")
    return "  ".join(parts)


def write_metrics(out: str, history: list) -> None:
    """(Re)write ``metrics.jsonl`` and ``metrics.csv`` in ``out`` from ``history``, each
    atomically (a temporary file renamed over the old one: a kill or a full disk leaves
    the previous complete file, never a torn line)."""
    with atomic_open(os.path.join(out, "metrics.jsonl"), "w") as f:
        for rec in history:
            f.write(json.dumps(rec) + "\n")
    cols = []
    for rec in history:
        cols += [k for k in rec if k != "seeds" and k not in cols]
    with atomic_open(os.path.join(out, "metrics.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for rec in history:
            w.writerow({k: v for k, v in rec.items() if k != "seeds"})


def load_history(out: str) -> list:
    """Read ``metrics.jsonl`` of a run directory (older key names are renamed, see the
    module docstring).

    A torn last line (a writer killed mid-append, e.g. by a full disk, in a file not
    written by :func:`write_metrics`) is dropped with a ``RuntimeWarning``; a bad line
    elsewhere, or bytes that are not UTF-8, raise ``ValueError`` naming the file and
    line."""
    path = os.path.join(os.fspath(out), "metrics.jsonl")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        lines = raw.decode("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path} is not UTF-8 text ({e})") from None
    numbered = [(i, line) for i, line in enumerate(lines, 1) if line.strip()]
    history = []
    for n, (i, line) in enumerate(numbered):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
        except ValueError as e:
            if n == len(numbered) - 1 and not raw.endswith(b"\n"):
                warnings.warn(f"{path}: the last line ({i}) is torn (an interrupted write) "
                              "and was ignored", RuntimeWarning, stacklevel=2)
                break
            raise ValueError(f"{path} line {i} is not a JSON record ({e})") from None
        history.append(_upgrade(rec))
    return history


class TensorBoard:
    """TensorBoard event files beside ``metrics.jsonl`` (``<out>/tensorboard``): every
    numeric metric of a record as a scalar at its step.  Needs the optional
    ``tensorboardX`` (``pip install rnnjax[tensorboard]``); a ``ValueError`` says so
    when it is missing."""

    def __init__(self, out: str):
        self.writer = self.writer_class()(os.path.join(out, "tensorboard"))

    @staticmethod
    def writer_class():
        """tensorboardX's ``SummaryWriter``; a ``ValueError`` naming the install
        command when it is missing (the runner asks before it writes anything)."""
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            raise ValueError("tensorboard=True needs the optional tensorboardX package: "
                             "pip install tensorboardX (or rnnjax[tensorboard])") from None
        return SummaryWriter

    def write(self, rec: dict) -> None:
        for k, v in rec.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                self.writer.add_scalar(k, v, rec["step"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class NonFiniteError(FloatingPointError):
    """The loss or gradient was non-finite for ``max_nonfinite`` consecutive steps."""


def check_nonfinite(nonfinite_run, max_nonfinite: int, step: int, seed: int) -> None:
    """Raise :class:`NonFiniteError` when a seed's current run of non-finite steps
    (``nonfinite_run``: ``(seeds,)`` counts) reached ``max_nonfinite`` (0: never)."""
    if not max_nonfinite:
        return
    run = np.asarray(nonfinite_run).reshape(-1)
    if run.max() < max_nonfinite:
        return
    bad = [seed + i for i in np.flatnonzero(run >= max_nonfinite)]
    raise NonFiniteError(
        f"step {step}: the loss or gradient was non-finite for {max_nonfinite} "
        f"consecutive steps (steps {step - max_nonfinite + 1}..{step}, seed "
        f"{', '.join(map(str, bad))}); their updates were skipped and the run stops here "
        f"(max_nonfinite={max_nonfinite}). Lower the learning rate, clip the "
        f"gradients (--clip) or raise --max-nonfinite")


__all__ = ["LOSS_NAMES", "NonFiniteError", "TIMING_KEYS", "TensorBoard", "check_nonfinite",
           "format_loss",
           "format_mean_std", "format_record", "load_history", "make_record", "renamed",
           "write_metrics"]
