r"""Autoregressive colour sequences: an Elman RNN whose output is its next input.

The classic teaching example of a recurrent network generating a palette.  One step,
for a colour ``x_t`` in ``[0, 1]^3`` (RGB) and hidden state ``h_t`` (``H`` units)::

    a_t     = W_xh x_{t-1} + W_hh h_{t-1} + b_h        pre-activation, h_0 = 0
    h_t     = tanh(a_t / tau)                          tau: the temperature
    x_t     = clip(W_hy h_t + b_y, 0, 1)               the next colour, fed back as input

starting from a seed colour ``x_0``.  The temperature divides the pre-activation:
``tau < 1`` sharpens ``tanh`` towards saturated (more contrasting) colours, ``tau > 1``
flattens it towards ``b_y`` (greyer palettes); ``tau = 1`` is the plain cell.

Default weights (:func:`init`), with ``s`` the weight scale and ``S(A) = triu(A, 1) -
triu(A, 1)^T`` (:func:`rnnjax.parametrize.skew`)::

    W_xh ~ s N(0, 1)          b_h = -W_xh (1/2, 1/2, 1/2)    (a_t = 0 at mid grey)
    W_hh = expm(S(A)),  A ~ 0.5 s N(0, 1) / sqrt(H)         (orthogonal: a slow rotation)
    W_hy ~ 0.5 s N(0, 1) / sqrt(H)                         b_y = 1/2

Why these and not ``W_hh = 0.5 I + 0.1 s N(0, 1)``, ``b_h = 0``, ``W_hy ~ 0.4 s N(0, 1)``
(the first version): that recurrence contracts (spectral radius about 0.9), the
uncentred input ``W_xh x`` drives every state the same way and the readout gain of
about ``0.4 sqrt(H)`` pushes all three channels past the clip, so after a few steps
the fed-back colour is the constant corner ``(1, 0, 1)``, the loop's gain is zero and
every seed falls into the same fixed point: 21 of 24 colours of every palette were
``#ff00ff`` whatever the seed.  An orthogonal ``W_hh`` forgets nothing by itself, the
centred input bias makes the drive depend on how the colour departs from grey, and
the readout gain of order one keeps colours inside the cube, so palettes stay apart
(:func:`palette_distance`; tests/test_apps_colors.py bounds it against the old init).

The recurrence is :func:`rnnjax.cells.elman` (its params ``W_xh, W_hh, b``) with the
readout ``{"W_hy", "b_y"}``; the feedback loop is a ``lax.scan`` over ``cell.step``
plus the readout.  :func:`train` fits the weights to palettes read from a file by
teacher forcing (predict colour ``t+1`` from colours ``0..t``, mean squared error on
the unclipped readout).
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.apps import _common
from rnnjax.cells import elman
from rnnjax.cells.parametrize import expm_orthogonal
from rnnjax.core.checks import (
    check_file,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
)
from rnnjax.engine.sequence import run
from rnnjax.io.outputs import writes_out
from rnnjax.plots import figures
from rnnjax.training.update import fit

DEFAULT_SEEDS = ("#e63946", "#2a9d8f", "#f4a261", "#264653", "#ffffff")


def init(key, hidden_size: int = 16, scale: float = 1.0):
    """Default weights (see the module docstring for the equations and why)."""
    check_positive_int("hidden_size", hidden_size)
    check_nonneg_float("scale", scale)
    H = hidden_size
    k1, k2, k3 = jax.random.split(key, 3)
    W_xh = scale * jax.random.normal(k1, (H, 3), jnp.float32)
    A = 0.5 * scale / math.sqrt(H) * jax.random.normal(k2, (H, H), jnp.float32)
    return {
        "cell": {"W_xh": W_xh, "W_hh": expm_orthogonal(A), "b": -0.5 * W_xh.sum(axis=1)},
        "W_hy": 0.5 * scale / math.sqrt(H) * jax.random.normal(k3, (3, H), jnp.float32),
        "b_y": jnp.full((3,), 0.5, jnp.float32),
    }


def _tempered(cell_params, temperature):
    """Elman params whose ``tanh(W_xh x + W_hh h + b)`` equals ``tanh(a / tau)``."""
    return jax.tree.map(lambda w: w / temperature, cell_params)


def generate(params, seeds, length: int, temperature: float = 1.0):
    """Run the feedback loop from each seed colour.

    Args:
      params: from :func:`init` or :func:`train`.
      seeds: ``(S, 3)`` colours in ``[0, 1]`` (or ``(3,)`` for one).
      length: number of colours generated after each seed.
      temperature: ``tau > 0`` dividing the pre-activation.

    Returns:
      ``(S, length, 3)`` generated colours (the seeds not included), all in ``[0, 1]``.
    """
    seeds = jnp.asarray(seeds)
    if seeds.shape[-1:] != (3,) or seeds.ndim not in (1, 2):
        raise ValueError(f"seeds must have shape (S, 3) or (3,), got {seeds.shape}")
    check_positive_int("length", length)
    check_positive_float("temperature", temperature)
    single = seeds.ndim == 1
    seeds = jnp.atleast_2d(seeds).astype(params["b_y"].dtype)
    H = params["cell"]["W_hh"].shape[0]
    cell = elman(H)
    w = cell.prepare(_tempered(params["cell"], temperature))

    def one(seed):
        def body(carry, _):
            state, x = carry
            state, h = cell.step(w, state, x)
            y = jnp.clip(params["W_hy"] @ h + params["b_y"], 0.0, 1.0)
            return (state, y), y

        _, ys = jax.lax.scan(body, (cell.initial_carry((), seed.dtype), seed), None,
                             length=length)
        return ys

    out = jax.vmap(one)(seeds)
    return out[0] if single else out


def palette_distance(colors) -> float:
    """Mean distance between palettes: ``mean_{i<j} mean_t ||c_i(t) - c_j(t)||_2`` over
    the ``(S, L, 3)`` generated colours (0 when every seed gives the same palette; at
    most ``sqrt(3)``)."""
    c = np.asarray(colors, np.float64)
    if c.ndim != 3 or c.shape[-1] != 3 or c.shape[0] < 2:
        raise ValueError(f"colors must have shape (S >= 2, L, 3), got {c.shape}")
    d = np.linalg.norm(c[:, None] - c[None], axis=-1).mean(axis=-1)
    return float(d[np.triu_indices(c.shape[0], 1)].mean())


def first_step(params, seed, temperature: float = 1.0):
    """Closed form of the first generated colour:
    ``clip(W_hy tanh((W_xh x_0 + b_h) / tau) + b_y, 0, 1)`` (``h_0 = 0``)."""
    c = params["cell"]
    h = jnp.tanh((c["W_xh"] @ seed + c["W_hh"] @ jnp.zeros_like(c["b"]) + c["b"]) / temperature)
    return jnp.clip(params["W_hy"] @ h + params["b_y"], 0.0, 1.0)


# --- colours and palette files ------------------------------------------------------

def parse_color(text: str):
    """``"#rrggbb"``, ``"rrggbb"`` or ``"r,g,b"`` (floats in [0, 1]) -> ``(3,)`` floats."""
    t = text.strip()
    try:
        if "," in t:
            rgb = [float(v) for v in t.split(",")]
            if len(rgb) == 3 and all(0.0 <= v <= 1.0 for v in rgb):
                return np.asarray(rgb, np.float32)
        else:
            h = t.lstrip("#")
            if len(h) == 6:
                return np.asarray([int(h[i:i + 2], 16) / 255.0 for i in (0, 2, 4)],
                                  np.float32)
    except ValueError:
        pass
    raise ValueError(f"a colour must be '#rrggbb' or 'r,g,b' with values in [0, 1], "
                     f"got {text!r}")


def to_hex(rgb) -> str:
    r, g, b = (int(round(float(v) * 255)) for v in rgb)
    return f"#{r:02x}{g:02x}{b:02x}"


def read_palettes(path):
    """One palette per line: colours (``#rrggbb``) separated by spaces; ``#`` followed by
    a space starts a comment line.  All palettes must have the same length (>= 2).
    Returns ``(P, L, 3)``."""
    check_file("palettes", path)
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("# ") or line == "#":
                continue
            try:
                rows.append([parse_color(t) for t in line.split()])
            except ValueError as e:
                raise ValueError(f"{path}, line {n}: {e}") from None
    if not rows:
        raise ValueError(f"palettes file {path!r} holds no palette")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1 or min(lengths) < 2:
        raise ValueError(f"every palette in {path!r} must have the same length >= 2, "
                         f"got lengths {sorted(lengths)}")
    return np.asarray(rows, np.float32)


# --- training -------------------------------------------------------------------------

def _teacher_forced(params, palettes):
    """Predictions of colours ``1..L-1`` from colours ``0..L-2`` (unclipped readout)."""
    H = params["cell"]["W_hh"].shape[0]
    hs, _ = run(elman(H), params["cell"], palettes[:, :-1])
    return hs @ params["W_hy"].T + params["b_y"]


def train(params, palettes, *, steps: int = 500, lr: float = 1e-2, seed: int = 0):
    """Fit ``params`` so that each palette's colours follow from its first one.

    Loss: mean squared error between the teacher-forced predictions and colours
    ``1..L-1`` (temperature 1).  Returns ``(params, losses)``.
    """
    palettes = jnp.asarray(palettes, jnp.float32)
    if palettes.ndim != 3 or palettes.shape[-1] != 3 or palettes.shape[1] < 2:
        raise ValueError(f"palettes must have shape (P, L >= 2, 3), got {palettes.shape}")
    check_positive_int("steps", steps)

    def loss(p, _):
        return jnp.mean((_teacher_forced(p, palettes) - palettes[:, 1:]) ** 2)

    return fit(loss, params, lambda k: None, steps=steps, lr=lr,
                       key=jax.random.key(seed), clip=10.0)


def free_running_mse(params, palettes):
    """MSE of the palettes generated from each first colour against the palettes."""
    palettes = jnp.asarray(palettes, jnp.float32)
    gen = generate(params, palettes[:, 0], palettes.shape[1] - 1)
    return float(jnp.mean((gen - palettes[:, 1:]) ** 2))


# --- the picture ----------------------------------------------------------------------

def plot_stripes(seeds, colors, path, title=None):
    """PNG of stripes: one row per seed, the seed swatch then its generated colours."""
    seeds, colors = np.asarray(seeds), np.asarray(colors)
    img = np.concatenate([seeds[:, None, :], colors], axis=1)  # (S, 1 + L, 3)
    S, L = img.shape[:2]
    fig = figures.figure(figsize=(max(3.0, 0.35 * L), 0.5 * S + 0.6))
    ax = fig.add_subplot()
    ax.imshow(img, aspect="auto", interpolation="nearest")
    ax.axvline(0.5, color="black", linewidth=2)
    ax.set_yticks(range(S), [to_hex(s) for s in seeds], fontfamily="monospace")
    ax.set_xticks([0] + list(range(1, L, max(1, (L - 1) // 8))))
    ax.set_xlabel("step (0 = seed)")
    if title:
        ax.set_title(title)
    figures.save(fig, path)


@writes_out(reads=("palettes",))
def run_colors(out, *, seeds=DEFAULT_SEEDS, hidden: int = 16, scale: float = 1.0,
               temperature: float = 1.0, length: int = 24, seed: int = 42,
               palettes=None, train_steps: int = 500, lr: float = 1e-2, print_fn=print):
    """The ``rnnjax colors`` pipeline: (optionally train, then) generate and draw.

    Writes ``colors.png`` and ``colors.json`` (the hex palettes and settings) into
    ``out``; returns the summary dict.
    """
    _common.check_fit(steps=train_steps, lr=lr, steps_name="train_steps")
    out = _common.out_dir(out)
    seed_rgb = np.stack([parse_color(s) if isinstance(s, str) else np.asarray(s, np.float32)
                         for s in seeds])
    params = init(jax.random.key(seed), hidden, scale)
    summary = {"hidden": hidden, "scale": scale, "temperature": temperature,
               "length": length, "seed": seed}
    if palettes is not None:
        data = read_palettes(palettes)
        before = free_running_mse(params, data)
        params, losses = train(params, data, steps=train_steps, lr=lr, seed=seed)
        after = free_running_mse(params, data)
        summary["training"] = {"palettes": os.fspath(palettes), "count": int(data.shape[0]),
                               "steps": train_steps, "teacher_forced_mse": losses[-1],
                               "free_running_mse_before": before,
                               "free_running_mse_after": after}
        print_fn(f"trained on {data.shape[0]} palettes: free-running MSE "
                 f"{before:.4f} -> {after:.4f}")
    colors = np.asarray(generate(params, seed_rgb, length, temperature))
    summary["palettes"] = {to_hex(s): [to_hex(c) for c in row]
                           for s, row in zip(seed_rgb, colors)}
    if len(colors) > 1:
        summary["palette_distance"] = palette_distance(colors)
    png = os.path.join(out, "colors.png")
    plot_stripes(seed_rgb, colors, png,
                 title=f"Elman H={hidden}, scale {scale}, temperature {temperature}")
    _common.write_json(os.path.join(out, "colors.json"), summary)
    for s, row in summary["palettes"].items():
        print_fn(f"{s}: {' '.join(row[:8])}{' ...' if len(row) > 8 else ''}")
    if "palette_distance" in summary:
        print_fn(f"mean distance between palettes {summary['palette_distance']:.3f} "
                 f"(RGB in [0, 1]; 0 = all alike)")
    print_fn(f"wrote {png}")
    return summary


__all__ = ["DEFAULT_SEEDS", "first_step", "free_running_mse", "generate", "init",
           "palette_distance", "parse_color", "plot_stripes", "read_palettes", "run_colors",
           "to_hex", "train"]
