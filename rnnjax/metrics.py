"""The metric records of a training run: one record per logging step, written as
``metrics.jsonl`` and ``metrics.csv`` in the run directory (:mod:`rnnjax.train`).

A record holds ``step``; for every metric its mean over seeds and ``<name>_std`` (the
standard deviation over seeds), with the per-seed values under ``seeds`` when there
are several; ``baseline`` and ``eval_loss_over_baseline`` when the task has a
baseline; ``steps_per_sec`` and ``time`` (:data:`TIMING_KEYS`, not deterministic).
"""

from __future__ import annotations

import csv
import json
import os
import warnings

import numpy as np

from rnnjax.outputs import atomic_open

# Keys of a record that are not deterministic (timings).
TIMING_KEYS = ("steps_per_sec", "time")


def make_record(step, values: dict, baseline, rate, elapsed, n_seeds) -> dict:
    """One metrics record from ``values`` (``name -> (seeds,)`` numbers)."""
    rec = {"step": int(step)}
    per_seed = {}
    for k, v in values.items():
        v = np.asarray(v, np.float64).reshape(n_seeds)
        rec[k] = float(v.mean())
        rec[f"{k}_std"] = float(v.std())
        per_seed[k] = [float(x) for x in v]
    if baseline is not None:
        rec["baseline"] = float(baseline)
        rec["eval_loss_over_baseline"] = rec["eval_loss"] / float(baseline)
    rec["steps_per_sec"] = float(rate)
    rec["time"] = float(elapsed)
    if n_seeds > 1:
        rec["seeds"] = per_seed
    return rec


def format_record(rec: dict) -> str:
    """One line of a record for the terminal."""
    parts = [f"step {rec['step']:6d}", f"loss {rec['loss']:.4f}",
             f"eval {rec['eval_loss']:.4f}"]
    if "baseline" in rec:
        parts.append(f"(baseline {rec['baseline']:.4f})")
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
    """Read ``metrics.jsonl`` of a run directory.

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
        history.append(rec)
    return history


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


__all__ = ["NonFiniteError", "TIMING_KEYS", "check_nonfinite", "format_record",
           "load_history", "make_record", "write_metrics"]
