"""Throughput of rnnjax against Flax ``nn.RNN``, Equinox and PyTorch, side by side.

For each cell (Elman, LSTM, GRU), batch ``B``, length ``T``, hidden ``H`` (input
``F`` features, float32) and mode (``fwd``: the outputs; ``fwdbwd``: value and gradient
of ``sum(ys)`` with respect to the parameters) it builds one callable per library and
times them interleaved, one call of each in turn per round, so load on a shared machine
hits all of them alike.  Peers:

* Flax linen ``nn.RNN`` over ``OptimizedLSTMCell`` and ``LSTMCell`` (LSTM),
  ``GRUCell`` (GRU), ``SimpleCell`` (Elman);
* Equinox ``LSTMCell`` / ``GRUCell`` under ``lax.scan`` + ``vmap`` (Equinox has no
  Elman cell);
* PyTorch ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` (``batch_first``), eager; on a CUDA
  device (library ``torch-cudnn``) they run cuDNN's kernels.

A peer that is not installed is skipped with a printed note.  One JSON line per
(config, library) with median/min seconds, compile (first call) seconds apart, the
FLOP count of the matmuls and the achieved GFLOP/s, and ``over_best_peer`` on the
rnnjax rows (rnnjax median / fastest peer median).  In ``fwdbwd`` mode rnnjax is timed
three ways: its default (``rnnjax``, ``grad="auto"``: the faster of the two others on
this backend by :func:`rnnjax.engine.bptt.choose_grad`), autodiff through the scan
(``rnnjax-autodiff``) and the hand-written BPTT (``rnnjax-manual``).

    python -m benchmarks peers                      # the aim configuration
    python -m benchmarks peers --grid               # the whole grid (long)
    python -m benchmarks peers --quick              # tiny sizes (smoke test)
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import statistics
import time

import jax
import jax.numpy as jnp

import rnnjax
from benchmarks.common import block, emit
from rnnjax import cells

GATES = {"elman": 1, "lstm": 4, "gru": 3}


def have(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def matmul_flops(cell: str, B: int, T: int, F: int, H: int, mode: str) -> float:
    """Multiply-adds x 2 of the input and recurrent matmuls (backward: twice more)."""
    fwd = 2.0 * B * T * GATES[cell] * H * (F + H)
    return fwd if mode == "fwd" else 3.0 * fwd


def _grad_or_fwd(apply, params, xs, mode):
    """A jitted callable of (params, xs): the outputs, or value and grad of sum(ys)."""
    if mode == "fwd":
        return jax.jit(apply)
    return jax.jit(jax.value_and_grad(lambda p, x: jnp.sum(apply(p, x))))


# --- rnnjax -----------------------------------------------------------------------

def rnnjax_fn(cell, B, T, F, H, mode, key, **run_kwargs):
    c = cells.make(cell, H)
    params = c.init(key, F)
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)
    f = _grad_or_fwd(lambda p, x: rnnjax.run(c, p, x, **run_kwargs)[0], params, xs, mode)
    return lambda: f(params, xs)


# --- Flax linen -------------------------------------------------------------------

def flax_fns(cell, B, T, F, H, mode, key):
    if not have("flax"):
        return {}, "flax not installed"
    import flax.linen as nn
    kinds = {"lstm": {"flax-OptimizedLSTMCell": nn.OptimizedLSTMCell,
                      "flax-LSTMCell": nn.LSTMCell},
             "gru": {"flax-GRUCell": nn.GRUCell},
             "elman": {"flax-SimpleCell": nn.SimpleCell}}[cell]
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)
    out = {}
    for name, kind in kinds.items():
        model = nn.RNN(kind(features=H))
        params = model.init(key, xs)
        f = _grad_or_fwd(model.apply, params, xs, mode)
        out[name] = (lambda f=f, p=params: f(p, xs))
    return out, None


# --- Equinox ----------------------------------------------------------------------

def equinox_fns(cell, B, T, F, H, mode, key):
    if not have("equinox"):
        return {}, "equinox not installed"
    if cell == "elman":
        return {}, "equinox has no Elman cell"
    import equinox as eqx
    kind = {"lstm": eqx.nn.LSTMCell, "gru": eqx.nn.GRUCell}[cell]
    model = kind(F, H, key=key, dtype=jnp.float32)
    xs = jax.random.normal(jax.random.key(1), (B, T, F), jnp.float32)

    def apply(m, x):
        def one(seq):  # seq (T, F)
            h0 = jnp.zeros((H,), jnp.float32)
            carry = (h0, h0) if cell == "lstm" else h0

            def body(c, xt):
                c = m(xt, c)
                return c, (c[0] if cell == "lstm" else c)

            return jax.lax.scan(body, carry, seq)[1]

        return jax.vmap(one)(x)

    if mode == "fwd":
        f = eqx.filter_jit(apply)
    else:
        f = eqx.filter_jit(eqx.filter_value_and_grad(lambda m, x: jnp.sum(apply(m, x))))
    return {"equinox": lambda: f(model, xs)}, None


# --- PyTorch ----------------------------------------------------------------------

def torch_fns(cell, B, T, F, H, mode, key):
    if not have("torch"):
        return {}, "torch not installed"
    import torch
    torch.manual_seed(0)
    kind = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "elman": torch.nn.RNN}[cell]
    cuda = torch.cuda.is_available()  # then nn.LSTM/GRU/RNN run cuDNN's kernels
    dev = "cuda" if cuda else "cpu"
    model = kind(F, H, batch_first=True).to(dev)
    xs = torch.randn(B, T, F, device=dev)

    if mode == "fwd":
        def fn():
            with torch.no_grad():
                ys, _ = model(xs)
            return ys.cpu().numpy()  # waits for the device
    else:
        def fn():
            model.zero_grad(set_to_none=True)
            ys, _ = model(xs)
            loss = ys.sum()
            loss.backward()
            return loss.item()
    return {"torch-cudnn" if cuda else "torch": fn}, None


PEERS = (flax_fns, equinox_fns, torch_fns)
# rnnjax's ways to train (fwdbwd rows): the default (grad="auto": the faster of the two
# below on this backend, rnnjax.engine.bptt.choose_grad), autodiff through the scan, and the
# hand-written BPTT of rnnjax.engine.bptt (the same gradient; Elman, LSTM and GRU)
VARIANTS = {"rnnjax": {}, "rnnjax-autodiff": {"grad": "autodiff"},
            "rnnjax-manual": {"grad": "manual"}}


def time_interleaved(fns: dict, repeats: int = 10, warmup: int = 2,
                     min_time: float = 0.0) -> dict:
    """Time zero-argument callables in alternation: first call (compile) of each apart,
    ``warmup`` untimed rounds, then rounds calling each once, until ``repeats`` rounds
    and at least ``min_time`` seconds for the slowest.  Returns per name
    ``{first, median, min, n}`` seconds."""
    first = {}
    for name, fn in fns.items():
        t0 = time.perf_counter()
        block(fn())
        first[name] = time.perf_counter() - t0
    for _ in range(warmup):
        for fn in fns.values():
            block(fn())
    times = {name: [] for name in fns}
    while True:
        for name, fn in fns.items():
            t0 = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - t0)
        n = len(next(iter(times.values())))
        if n >= repeats and min(sum(t) for t in times.values()) >= min_time:
            break
    return {name: {"first": first[name], "median": statistics.median(t), "min": min(t),
                   "n": len(t)} for name, t in times.items()}


def bench(cell, B, T, F, H, mode, repeats=10, out=None, variants=None, notes=None):
    """Time rnnjax (each of ``variants``: name -> run kwargs) and every peer at one
    configuration; emit one JSON line per library."""
    key = jax.random.key(0)
    variants = variants or {"rnnjax": {}}
    fns = {name: rnnjax_fn(cell, B, T, F, H, mode, key, **kw)
           for name, kw in variants.items()}
    for peer in PEERS:
        got, note = peer(cell, B, T, F, H, mode, key)
        if note and notes is not None and note not in notes:
            notes.add(note)
            print(f"# note: {note}; skipped", flush=True)
        fns.update(got)
    res = time_interleaved(fns, repeats=repeats)
    peers = {k: v for k, v in res.items() if k not in variants}
    best = min(peers, key=lambda k: peers[k]["median"]) if peers else None
    flops = matmul_flops(cell, B, T, F, H, mode)
    records = []
    for name, r in res.items():
        rec = {"bench": "peers", "cell": cell, "mode": mode, "batch": B, "T": T,
               "features": F, "H": H, "dtype": "float32", "library": name,
               "median_s": r["median"], "min_s": r["min"], "compile_s": r["first"],
               "n": r["n"], "gflops": flops / r["median"] / 1e9}
        if name in variants and best is not None:
            rec["best_peer"] = best
            rec["over_best_peer"] = r["median"] / peers[best]["median"]
        records.append(emit(rec, out))
    return records


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks peers",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes, 2 repeats")
    ap.add_argument("--grid", action="store_true",
                    help="batch 1/16/64/256 x T 64/256/1024 x hidden 64/128/256/512")
    ap.add_argument("--cells", nargs="+", default=list(GATES), choices=list(GATES))
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwdbwd"],
                    choices=["fwd", "fwdbwd"])
    ap.add_argument("--batch", nargs="+", type=int, default=[64])
    ap.add_argument("--T", nargs="+", type=int, default=[256])
    ap.add_argument("--H", nargs="+", type=int, default=[128])
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--out", default=None, help="also append the JSON lines to this file")
    a = ap.parse_args(argv)
    if a.grid:
        a.batch, a.T, a.H = [1, 16, 64, 256], [64, 256, 1024], [64, 128, 256, 512]
    if a.quick:
        a.batch, a.T, a.H, a.features, a.repeats = [2], [4], [4], 3, 2
        if a.cells == list(GATES):  # the LSTM has every peer
            a.cells = ["lstm"]
    notes, records = set(), []
    for cell, mode, B, T, H in itertools.product(a.cells, a.modes, a.batch, a.T, a.H):
        variants = VARIANTS if mode == "fwdbwd" else None
        records += bench(cell, B, T, a.features, H, mode, a.repeats, a.out, variants, notes)
    return records


if __name__ == "__main__":
    main()
