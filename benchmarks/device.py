"""One accelerator benchmark: peers, orthogonal copy steps, scans, cuDNN, bfloat16.

    python -m benchmarks device --out device.jsonl --md device.md   # one GPU, < 8 min
    python -m benchmarks device --quick                             # CPU smoke test

Five parts, each reusing its suite, one JSON line per measurement (``--out``) and one
markdown document (printed, and written to ``--md``) headed by the device name:

1. ``peers`` (:mod:`benchmarks.peers`): forward + backward of Elman, LSTM and GRU at
   batch 64, input 32, T 256 / 1024 x H 128 / 512; rnnjax (autodiff, ``grad="manual"``,
   and ``scan="cudnn"`` for the LSTM where cuDNN is present) against Flax, Equinox and
   PyTorch (``torch-cudnn``: ``nn.LSTM`` etc. on the CUDA device when torch has CUDA).
2. ``copy_step`` (:mod:`benchmarks.copy_step`): one copy-task training step of every
   orthogonal and unitary cell (T 1000, H 190, batch 128: expRNN's paper size) with
   its roofline.
3. ``scan`` (:mod:`benchmarks.scan`): sequential against associative scan, the LRU at
   T 256 ... 16384 and the dense linear Elman cell at T 256, 1024: the data for
   ``scan="auto"``'s rule on this backend.
4. ``cudnn``: the LSTM forward + backward by ``rnnjax.run`` with ``scan="sequential"``,
   ``grad="manual"`` and ``scan="cudnn"``, timed in alternation, with the largest
   difference of cuDNN's outputs and gradients from the sequential scan's (relative to
   the largest entry), and a check with ``lengths`` and ``reverse`` at a small size.
   Where cuDNN is absent (any CPU) the part is one line saying so.
5. ``bf16``: one copy-task training step (T 200, H 128, batch 64) of Elman, LSTM, GRU
   and expRNN built with ``dtype=jnp.bfloat16, param_dtype=jnp.float32`` against the
   same cell in float32 from the same params: time ratio, relative difference of the
   loss and of the gradient.  A cell factory that does not take ``dtype`` yet is one
   line saying so.

Every rnnjax call is float32 unless it says otherwise; ``--quick`` shrinks every size
to seconds (T <= 16, H <= 8) for the smoke test.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
from benchmarks import copy_step, peers, scan
from benchmarks.common import emit, machine
from benchmarks.roofline import matmul_peak
from benchmarks.summary import fmt, peers_table, table
from rnnjax import cells
from rnnjax.engine.cudnn import cudnn_available
from rnnjax.io.outputs import atomic_open

MS = 1e3
ORTHOGONAL = ("exprnn", "scornn", "householder", "fcurnn", "urnn", "eunn", "nnrnn",
              "spectral")
BF16_CELLS = ("elman", "lstm", "gru", "exprnn")

FULL = {"peers": dict(cells=("lstm", "gru", "elman"), batch=64, T=(256, 1024), H=(128, 512),
                      F=32, repeats=5),
        "copy": dict(cells=ORTHOGONAL, H=190, T=1000, batch=128, repeats=3),
        "scan": dict(lengths={"lru": (256, 1024, 4096, 16384), "elman-identity": (256, 1024)},
                     repeats=5),
        "cudnn": dict(batch=64, T=(256, 1024), H=(128, 512), F=32, repeats=5),
        "bf16": dict(cells=BF16_CELLS, H=128, T=200, batch=64, repeats=5)}
QUICK = {"peers": dict(cells=("lstm",), batch=2, T=(4,), H=(4,), F=3, repeats=1),
         # the sizes of the suites' own --quick runs, so the test suite's compile cache
         # serves both
         "copy": dict(cells=("exprnn",), H=4, T=5, batch=2, repeats=1),
         "scan": dict(lengths={"elman-identity": (16,)}, repeats=1),
         "cudnn": dict(batch=2, T=(4,), H=(4,), F=3, repeats=1),
         "bf16": dict(cells=("lstm",), H=4, T=5, batch=2, repeats=1)}


def note(part: str, text: str, out=None) -> dict:
    """A part (or one cell of it) that did not run: one JSON line saying why."""
    print(f"# note: {part}: {text}", flush=True)
    return emit({"bench": f"device-{part}", "skipped": text}, out)


def rel_diff(a, b) -> float:
    """``max |a - b| / max |b|`` over every leaf of two pytrees (float64)."""
    num = max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
              for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    den = max(float(np.max(np.abs(np.asarray(y, np.float64)))) for y in jax.tree.leaves(b))
    return num / max(den, np.finfo(np.float64).tiny)


# --- parts ------------------------------------------------------------------------------

def part_peers(cfg, out):
    variants = dict(peers.VARIANTS)
    records, notes = [], set()
    for cell in cfg["cells"]:
        kw = dict(variants, **({"rnnjax-cudnn": {"scan": "cudnn"}}
                               if cell == "lstm" and cudnn_available() else {}))
        for T in cfg["T"]:
            for H in cfg["H"]:
                records += peers.bench(cell, cfg["batch"], T, cfg["F"], H, "fwdbwd",
                                       cfg["repeats"], out, kw, notes)
    return records, sorted(notes)


def part_copy(cfg, out):
    peak = matmul_peak(cfg["batch"], cfg["H"], cfg["H"])
    return [copy_step.bench(name, cfg["H"], cfg["T"], cfg["batch"], cfg["repeats"], peak, out)
            for name in cfg["cells"]], []


def part_scan(cfg, out):
    records = []
    for name, (cell, features) in scan._cells().items():
        for T in cfg["lengths"].get(name, ()):
            records += scan.bench(name, cell, features, T, cfg["repeats"], out)
    return records, []


def _lstm_fwdbwd(cell, **run_kw):
    def loss(p, x, lengths=None):
        ys, final = rnnjax.run(cell, p, x, lengths=lengths, **run_kw)
        return jnp.sum(jnp.sin(ys)) + jnp.sum(final.h * final.c), ys

    return jax.jit(jax.value_and_grad(loss, (0, 1), has_aux=True))


def part_cudnn(cfg, out):
    if not cudnn_available():
        return [note("cudnn", f"skipped: no cuDNN on backend {jax.default_backend()!r} "
                              "(scan='cudnn' needs a CUDA GPU)", out)], []
    variants = {"sequential": {"scan": "sequential"}, "manual": {"grad": "manual"},
                "cudnn": {"scan": "cudnn"}}
    B, F = cfg["batch"], cfg["F"]
    records = []
    key = jax.random.key(0)
    for T in cfg["T"]:
        for H in cfg["H"]:
            cell = cells.lstm(H)
            params = cell.init(key, F)
            xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)
            fns = {name: _lstm_fwdbwd(cell, **kw) for name, kw in variants.items()}
            got = {name: f(params, xs) for name, f in fns.items()}
            res = peers.time_interleaved({name: (lambda f=f: f(params, xs))
                                          for name, f in fns.items()},
                                         repeats=cfg["repeats"])
            base = res["sequential"]["median"]
            for name, r in res.items():
                (_, ys), grads = got[name]
                (_, ys0), grads0 = got["sequential"]
                records.append(emit({
                    "bench": "device-cudnn", "cell": "lstm", "batch": B, "T": T,
                    "features": F, "H": H, "variant": name, "median_s": r["median"],
                    "min_s": r["min"], "compile_s": r["first"], "n": r["n"],
                    "over_sequential": r["median"] / base,
                    "ys_rel_diff": rel_diff(ys, ys0), "grad_rel_diff": rel_diff(grads, grads0)},
                    out))
    # conventions on the device: ragged lengths (0 and T included) and reverse
    cell, T = cells.lstm(8), 16
    params = cell.init(key, 4)
    xs = jax.random.normal(jax.random.key(2), (5, T, 4), jnp.float32)
    lengths = jnp.array([T, 0, 1, 7, 12])
    for reverse in (False, True):
        a = _lstm_fwdbwd(cell, scan="cudnn", reverse=reverse)(params, xs, lengths)
        b = _lstm_fwdbwd(cell, scan="sequential", reverse=reverse)(params, xs, lengths)
        records.append(emit({"bench": "device-cudnn", "cell": "lstm", "batch": 5, "T": T,
                             "H": 8, "variant": f"check lengths reverse={reverse}",
                             "ys_rel_diff": rel_diff(a[0][1], b[0][1]),
                             "grad_rel_diff": rel_diff(a[1], b[1])}, out))
    return records, []


def part_bf16(cfg, out):
    H, T, B = cfg["H"], cfg["T"], cfg["batch"]
    xs, ys = copy_step.copy_batch(B, T)
    tx = copy_step.optimizer()
    records, notes = [], []
    for name in cfg["cells"]:
        try:
            c16 = cells.make(name, H, dtype=jnp.bfloat16, param_dtype=jnp.float32)
        except TypeError as e:
            records.append(note("bf16", f"{name} skipped: the cell factory does not take "
                                        f"dtype/param_dtype yet ({e})", out))
            continue
        c32 = cells.make(name, H)
        params = {"cell": c32.init(jax.random.key(0), copy_step.SYMBOLS),
                  "out": {"W": 0.01 * jax.random.normal(
                      jax.random.key(2), (copy_step.CLASSES, c32.output_size)),
                      "b": jnp.zeros((copy_step.CLASSES,), jnp.float32)}}
        state = tx.init(params)
        steps = {"float32": copy_step.make_step(c32, tx), "bfloat16": copy_step.make_step(c16, tx)}
        grads = {dt: jax.jit(jax.grad(_copy_loss(c))) for dt, c in (("float32", c32),
                                                                      ("bfloat16", c16))}
        first = {dt: f(params, state, xs, ys) for dt, f in steps.items()}
        g = {dt: f(params, xs, ys) for dt, f in grads.items()}
        res = peers.time_interleaved({dt: (lambda f=f: f(params, state, xs, ys))
                                      for dt, f in steps.items()}, repeats=cfg["repeats"])
        l32, l16 = float(first["float32"][2]), float(first["bfloat16"][2])
        records.append(emit({
            "bench": "device-bf16", "cell": name, "H": H, "T": T, "batch": B,
            "float32_s": res["float32"]["median"], "bfloat16_s": res["bfloat16"]["median"],
            "bf16_over_f32": res["bfloat16"]["median"] / res["float32"]["median"],
            "compile_bf16_s": res["bfloat16"]["first"],
            "loss_rel_diff": abs(l16 - l32) / abs(l32),
            "grad_rel_diff": rel_diff(g["bfloat16"], g["float32"])}, out))
    return records, notes


def _copy_loss(cell):
    def loss(params, xs, ys):
        hs, _ = rnnjax.run(cell, params["cell"], xs)
        logits = hs.astype(jnp.float32) @ params["out"]["W"].T + params["out"]["b"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, ys).mean()
    return loss


PARTS = {"peers": part_peers, "copy": part_copy, "scan": part_scan, "cudnn": part_cudnn,
         "bf16": part_bf16}


# --- markdown -----------------------------------------------------------------------------

def _ms(x):
    return fmt(x * MS) if isinstance(x, float) else "-"


def markdown(results, seconds: float, quick: bool) -> str:
    """The document: device line, then one table per part (skips as notes).  ``results``:
    part -> (records, notes, seconds)."""
    m = machine()
    dev = jax.devices()[0]
    lines = [f"## Device benchmark: {getattr(dev, 'device_kind', dev.platform)} "
             f"({dev.platform}, {jax.device_count()} device(s))", "",
             f"Run {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
             f"{seconds:.0f} s wall{' (--quick sizes)' if quick else ''}; host {m['cpu']}, "
             f"{m['cores']} cores, jax {m['jax']}; float32 unless said.", ""]
    for part, (recs, notes, secs) in results.items():
        ran = [r for r in recs if "skipped" not in r]
        lines += [f"### {part} ({secs:.0f} s)", ""]
        lines += [f"- {n}" for n in notes] + [f"- {r['skipped']}" for r in recs
                                              if "skipped" in r]
        if notes or len(ran) < len(recs):
            lines.append("")
        if ran:
            lines += [_TABLES[part](ran), ""]
    return "\n".join(lines)


def _copy_table(recs):
    return table(["cell", "T", "H", "batch", "step (ms)", "compile (s)", "time / roofline"],
                 [[r["cell"], r["T"], r["H"], r["batch"], _ms(r["median_s"]),
                   fmt(r["compile_s"]), fmt(r.get("over_roofline", "-"))] for r in recs])


def _scan_table(recs):
    rows, times = [], {}
    for r in recs:
        if "scan" in r:
            times[(r["cell"], r["T"], r["pass"], r["scan"])] = r["median"]
        else:
            k = (r["cell"], r["T"], r["pass"])
            rows.append(list(k) + [_ms(times.get(k + ("sequential",))),
                                   _ms(times.get(k + ("associative",))),
                                   fmt(r["ratio_sequential_over_associative"])])
    return table(["cell", "T", "pass", "sequential (ms)", "associative (ms)",
                  "seq / assoc"], rows)


def _cudnn_table(recs):
    return table(["T", "H", "variant", "fwd+bwd (ms)", "/ sequential", "ys rel diff",
                  "grad rel diff"],
                 [[r["T"], r["H"], r["variant"], _ms(r.get("median_s")),
                   fmt(r.get("over_sequential", "-")), fmt(r["ys_rel_diff"], 2),
                   fmt(r["grad_rel_diff"], 2)] for r in recs])


def _bf16_table(recs):
    return table(["cell", "T", "H", "batch", "f32 step (ms)", "bf16 step (ms)", "bf16 / f32",
                  "loss rel diff", "grad rel diff"],
                 [[r["cell"], r["T"], r["H"], r["batch"], _ms(r["float32_s"]),
                   _ms(r["bfloat16_s"]), fmt(r["bf16_over_f32"]), fmt(r["loss_rel_diff"], 2),
                   fmt(r["grad_rel_diff"], 2)] for r in recs])


_TABLES = {"peers": peers_table, "copy": _copy_table, "scan": _scan_table,
           "cudnn": _cudnn_table, "bf16": _bf16_table}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks device",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (CPU smoke test)")
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    ap.add_argument("--md", default=None, help="also write the markdown tables to this file")
    a = ap.parse_args(argv)
    if a.md is not None and not os.path.isdir(os.path.dirname(os.path.abspath(a.md))):
        ap.error(f"--md must be a file in an existing folder, got {a.md!r}")
    sizes = QUICK if a.quick else FULL
    t0 = time.perf_counter()
    results = {}
    for part in a.parts:
        print(f"# device part {part}", flush=True)
        t1 = time.perf_counter()
        results[part] = PARTS[part](sizes[part], a.out) + (time.perf_counter() - t1,)
    text = markdown(results, time.perf_counter() - t0, a.quick)
    print(text, flush=True)
    if a.md:
        with atomic_open(a.md) as f:
            f.write(text + "\n")
    return results


__all__ = ["FULL", "ORTHOGONAL", "PARTS", "QUICK", "main", "markdown", "rel_diff"]


if __name__ == "__main__":
    main()
