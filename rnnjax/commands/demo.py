"""``rnnjax demo``: train a small cell on the adding problem and print the loss falling."""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import optax

import rnnjax
from rnnjax import cells


def adding_batch(key, batch, T):
    """Adding problem (Hochreiter & Schmidhuber 1997): channel 0 holds U(0,1) values,
    channel 1 marks one position in each half; the target is the sum of the two marked
    values.  Predicting the mean 1 scores MSE 1/6."""
    kv, k1, k2 = jax.random.split(key, 3)
    values = jax.random.uniform(kv, (batch, T))
    i = jax.random.randint(k1, (batch,), 0, T // 2)
    j = jax.random.randint(k2, (batch,), T // 2, T)
    marks = jax.nn.one_hot(i, T) + jax.nn.one_hot(j, T)
    return jnp.stack([values, marks], -1), jnp.sum(values * marks, -1)


def train_adding(cell_name="lstm", hidden=32, T=50, batch=64, steps=300, lr=3e-3, seed=0,
                 log_every=50, print_fn=print):
    cell = {"lstm": cells.lstm, "gru": cells.gru, "elman": cells.elman}[cell_name](hidden)
    k_cell, k_out, k_data = jax.random.split(jax.random.key(seed), 3)
    params = {"cell": cell.init(k_cell, 2),
              "w": jax.random.normal(k_out, (hidden,)) / hidden ** 0.5, "b": jnp.ones(())}
    opt = optax.adam(lr)
    state = opt.init(params)

    def loss_fn(p, xs, y):
        hs, _ = rnnjax.run(cell, p["cell"], xs)
        return jnp.mean((hs[:, -1] @ p["w"] + p["b"] - y) ** 2)

    @jax.jit
    def train_step(p, s, key):
        xs, y = adding_batch(key, batch, T)
        loss, g = jax.value_and_grad(loss_fn)(p, xs, y)
        updates, s = opt.update(g, s, p)
        return optax.apply_updates(p, updates), s, loss

    losses, t0 = [], time.perf_counter()
    for i, key in enumerate(jax.random.split(k_data, steps)):
        params, state, loss = train_step(params, state, key)
        losses.append(float(loss))
        if (i + 1) % log_every == 0 or i == 0:
            print_fn(f"step {i + 1:5d}  mse {loss:.4f}  (baseline 1/6 = {1 / 6:.4f})  "
                     f"{time.perf_counter() - t0:.1f}s")
    return params, losses


def register(sub):
    p = sub.add_parser("demo", help="train a small cell on the adding problem")
    p.add_argument("--cell", default="lstm", choices=["lstm", "gru", "elman"])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--T", type=int, default=50)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda a: train_adding(a.cell, a.hidden, a.T, steps=a.steps,
                                               seed=a.seed) and 0)
