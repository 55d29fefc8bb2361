"""Your own cell on the copy task, through the Python API.

A cell is an ``rnnjax.Cell``: a named tuple of pure functions (``init``, ``prepare``,
``initial_carry``, ``step``), where ``step`` is written for one example and
``rnnjax.run`` vmaps it over the batch and scans it over time.  This one is a leaky
Elman cell, ``h' = (1 - s) h + s tanh(W_xh x + W_hh h + b)`` with a learned leak
``s = sigmoid(a)`` per unit; it trains beside the built-in Elman cell on the copy task
of ``rnnjax.tasks``, with a linear readout and optax's RMSprop.

    python examples/own_cell.py            # T = 10, hidden 32, 300 steps
    python examples/own_cell.py --tiny     # a smoke run of a few seconds
"""

import argparse

import jax
import jax.numpy as jnp
import optax

import rnnjax
from rnnjax import cells, tasks


def leaky_elman(hidden_size: int) -> rnnjax.Cell:
    H = hidden_size

    def init(key, input_size):
        k1, k2 = jax.random.split(key)
        return {"W_xh": jax.random.normal(k1, (H, input_size)) / jnp.sqrt(input_size),
                "W_hh": jax.nn.initializers.orthogonal()(k2, (H, H)),
                "b": jnp.zeros(H), "a": jnp.zeros(H)}

    def step(p, carry, x):
        s = jax.nn.sigmoid(p["a"])
        h = (1 - s) * carry.h + s * jnp.tanh(p["W_xh"] @ x + p["W_hh"] @ carry.h + p["b"])
        return rnnjax.HiddenState(h), h

    return rnnjax.Cell(
        init=init,
        prepare=lambda p: p,  # nothing to build once per sequence
        initial_carry=lambda batch_shape, dtype: rnnjax.HiddenState(
            jnp.zeros(batch_shape + (H,), dtype)),
        step=step,
        input_size=lambda p: p["W_xh"].shape[-1],
        output_size=H,
        name="leaky_elman",
        recurrent_matrix=lambda p: p["W_hh"])


def train_on_copy(cell, task, *, steps, batch, lr, seed=0):
    """Train ``cell`` + a linear readout on ``task``; return the held-out metrics."""
    k_cell, k_out, k_data, k_eval = jax.random.split(jax.random.key(seed), 4)
    params = {"cell": cell.init(k_cell, task.input_size),
              "W_out": jax.random.normal(k_out, (task.output_size, cell.output_size)) * 0.1,
              "b_out": jnp.zeros(task.output_size)}

    def logits(p, xs):
        ys, _ = rnnjax.run(cell, p["cell"], task.encode(xs))
        return ys @ p["W_out"].T + p["b_out"]

    def loss(p, key):
        xs, ys = task.sample(key, batch)
        return task.loss(logits(p, xs), ys)

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.rmsprop(lr))

    @jax.jit
    def update(p, opt, key):
        value, grads = jax.value_and_grad(loss)(p, key)
        updates, opt = tx.update(grads, opt, p)
        return optax.apply_updates(p, updates), opt, value

    opt = tx.init(params)
    for key in jax.random.split(k_data, steps):
        params, opt, _ = update(params, opt, key)
    xs, ys = task.eval_sample(k_eval, 256)
    return {k: float(v) for k, v in task.metrics(logits(params, xs), ys).items()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (a smoke run)")
    args = ap.parse_args(argv)
    T, hidden, steps = (5, 8, 20) if args.tiny else (10, 32, 300)
    task = tasks.copy_task(T=T)
    print(f"copy task, T = {T}: memoryless baseline {task.baseline:.4f} ({task.baseline_note})")
    for cell in (leaky_elman(hidden), cells.elman(hidden)):
        m = train_on_copy(cell, task, steps=steps, batch=32, lr=1e-3)
        print(f"{cell.name:12s} held-out CE {m['loss']:.4f} "
              f"({m['loss'] / task.baseline:.2f} x baseline), "
              + ", ".join(f"{k} {v:.3f}" for k, v in m.items() if k != "loss"))


if __name__ == "__main__":
    main()
