r"""Time-series forecasting with an RNN, against a naive and a linear autoregressive model.

Windows: from a series ``s`` (standardised with the mean and standard deviation of its
training part), each example is a window ``x = s[t-W+1 .. t]`` (``W`` = ``window``)
and its target the next ``h`` values ``s[t+1 .. t+h]`` (``h`` = ``horizon``).  The
first ``1 - test_fraction`` of the series gives training windows, the rest test
windows (chronological split, no overlap of targets with the training part).

Models:
  * ``"vector"`` (sequence-to-vector): the RNN reads the window and a dense layer maps
    its last hidden state to the ``h`` future values.
  * ``"seq"`` (sequence-to-sequence): at every step ``i`` of the window the dense
    layer predicts ``s[i+1 .. i+h]``; the loss averages over all steps (more training
    signal per window) and the forecast is the prediction at the last step.
  * Both RNNs see each window relative to its last value and predict the change from
    it (see :func:`predict_all`), which keeps them usable on drifting series.
  * naive last value: ``s_hat[t+k] = s[t]``.
  * AR(p) fitted by least squares on the training part,
    ``s[t+1] = c + sum_{i=1..p} a_i s[t+1-i]``, iterated ``h`` steps ahead.
  * ARMA(p, 1) from statsmodels when it is installed (skipped with a note otherwise).

  * seasonal naive with period ``m``: ``s_hat[t+k] = s[t+k-m*ceil(k/m)]`` (when the
    series has a season and ``window >= m``).

Metrics on the held-out tail: MSE (in the series' units) and MASE (Hyndman & Koehler
2006): mean absolute error over the in-sample mean absolute error of the seasonal
naive one-step forecast on the training part, ``mean_t |s_t - s_{t-m}|`` (``m = 1``
without a season).

Series: :func:`sines` (a noisy sum of sines), :func:`seasonal_walk` (a random walk
plus a seasonal sine), :func:`read_csv_column` for a column of a user CSV file, and
the real series shipped with statsmodels (:func:`load_real_series`, the ``data`` extra):
``sunspots`` (yearly Wolf sunspot numbers 1700-2008, 309 values, cycle ~11), ``co2``
(weekly Mauna Loa CO2 1958-2001, 2284 values, gaps filled by linear interpolation,
season 52), ``elnino`` (monthly Nino 3 sea-surface temperatures 1950-2010, 732 values,
season 12) and ``nile`` (annual Nile flow at Aswan 1871-1970, 100 values, no season).
"""

from __future__ import annotations

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import cells
from rnnjax.apps import _common
from rnnjax.core.checks import check_choice, check_file, check_fraction, check_positive_int
from rnnjax.engine.sequence import run
from rnnjax.io.outputs import atomic_open, writes_out
from rnnjax.plots import figures
from rnnjax.training.update import fit

SYNTHETIC = ("sines", "walk")
REAL = {"sunspots": 11, "co2": 52, "elnino": 12, "nile": None}  # name -> season
SERIES = SYNTHETIC + tuple(REAL)
MODES = ("vector", "seq")


# --- series ---------------------------------------------------------------------------

def sines(n: int, *, periods=(23.0, 37.0, 61.0), noise: float = 0.1, seed: int = 0):
    """``s_t = sum_k sin(2 pi t / P_k + phi_k) + noise * N(0, 1)``, random phases."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    phases = rng.uniform(0, 2 * np.pi, len(periods))
    s = sum(np.sin(2 * np.pi * t / p + ph) for p, ph in zip(periods, phases))
    return (s + noise * rng.standard_normal(n)).astype(np.float32)


def seasonal_walk(n: int, *, period: float = 24.0, amplitude: float = 2.0,
                  step: float = 0.3, seed: int = 0):
    """``s_t = sum_{u<=t} step * N(0, 1) + amplitude * sin(2 pi t / period)``."""
    rng = np.random.default_rng(seed)
    walk = np.cumsum(step * rng.standard_normal(n))
    return (walk + amplitude * np.sin(2 * np.pi * np.arange(n) / period)).astype(np.float32)


def load_real_series(name: str):
    """``(values float32, season or None)`` of a statsmodels dataset (see module doc)."""
    check_choice("series", name, REAL)
    try:
        import statsmodels.api as sm
    except ImportError:
        raise ImportError(f"the {name!r} series needs statsmodels: pip install -e "
                          f"\".[data]\"") from None
    df = getattr(sm.datasets, name).load_pandas().data
    if name == "sunspots":
        v = df["SUNACTIVITY"].to_numpy()
    elif name == "co2":
        v = df["co2"].interpolate(limit_direction="both").to_numpy()
    elif name == "elnino":
        v = df.drop(columns="YEAR").to_numpy().reshape(-1)  # years x months, row by row
    else:
        v = df["volume"].to_numpy()
    return np.asarray(v, np.float32), REAL[name]


def read_csv_column(path, column):
    """The values of ``column`` (a header name or a 0-based index) of a CSV file."""
    check_file("csv", path)
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise ValueError(f"csv file {path!r} is empty")
    header = rows[0]
    if isinstance(column, str) and column in header:
        idx, body = header.index(column), rows[1:]
    else:
        try:
            idx = int(column)
        except (TypeError, ValueError):
            raise ValueError(f"column must be one of the header names {header} or an "
                             f"index, got {column!r}") from None
        try:
            float(rows[0][idx])
            body = rows
        except ValueError:
            body = rows[1:]
        except IndexError:
            raise ValueError(f"column index {idx} is out of range for {len(header)} "
                             f"columns") from None
    try:
        return np.asarray([float(r[idx]) for r in body if r], np.float32)
    except (ValueError, IndexError) as e:
        raise ValueError(f"column {column!r} of {path!r} must hold numbers: {e}") from None


# --- windows and baselines ------------------------------------------------------------

def windows(s, window: int, horizon: int):
    """All windows ``(N, window)`` of ``s`` and their targets ``(N, horizon)``."""
    n = len(s) - window - horizon + 1
    if n < 1:
        raise ValueError(f"the series has {len(s)} values, fewer than window + horizon "
                         f"= {window + horizon}")
    idx = np.arange(n)[:, None]
    return s[idx + np.arange(window)], s[idx + window + np.arange(horizon)]


def split(s, window, horizon, test_fraction):
    """Chronological split: training windows whose targets end before the cut, test
    windows whose targets start after it."""
    cut = int(round(len(s) * (1.0 - test_fraction)))
    xtr, ytr = windows(s[:cut], window, horizon)
    xte, yte = windows(s[cut - window:], window, horizon)
    return (xtr, ytr), (xte, yte), cut


def naive_forecast(x, horizon):
    """Last value repeated: ``(N, window) -> (N, horizon)``."""
    return np.repeat(x[:, -1:], horizon, axis=1)


def seasonal_naive(x, horizon, m: int):
    """``s_hat[t+k] = s[t+k-m*ceil(k/m)]`` from windows ``x (N, W >= m)``."""
    if x.shape[1] < m:
        raise ValueError(f"the seasonal naive forecast needs window >= season {m}, got "
                         f"{x.shape[1]}")
    W = x.shape[1]
    return np.stack([x[:, W - m + (k % m)] for k in range(horizon)], 1)


def mase(pred, truth, train_part, m=None):
    """Mean absolute error over ``mean_t |s_t - s_{t-m}|`` on ``train_part``."""
    m = m or 1
    scale = float(np.mean(np.abs(train_part[m:] - train_part[:-m])))
    return float(np.mean(np.abs(pred - truth))) / scale


def fit_ar(s, order: int):
    """Least-squares AR(p): returns ``(c, a)`` with ``a[i-1]`` the weight of ``s[t+1-i]``."""
    X, y = windows(s, order, 1)
    A = np.concatenate([np.ones((len(X), 1)), X[:, ::-1]], 1).astype(np.float64)
    coef, *_ = np.linalg.lstsq(A, y[:, 0].astype(np.float64), rcond=None)
    return coef[0], coef[1:]


def ar_forecast(c, a, x, horizon):
    """Iterate the AR model ``horizon`` steps from the windows ``x (N, W >= p)``."""
    p = len(a)
    hist = x[:, -p:].astype(np.float64)
    out = []
    for _ in range(horizon):
        nxt = c + hist[:, ::-1] @ a
        out.append(nxt)
        hist = np.concatenate([hist[:, 1:], nxt[:, None]], 1)
    return np.stack(out, 1).astype(np.float32)


def arma_forecast(train_series, test_x, horizon, order=(2, 0, 1)):
    """ARMA via statsmodels, or ``None`` when statsmodels is not installed.  The model
    is fitted on the training part, then each test window is filtered with the fitted
    parameters (``apply``) before forecasting."""
    try:
        from statsmodels.tsa.arima.model import ARIMA
    except ImportError:
        return None
    fitted = ARIMA(train_series.astype(np.float64), order=order).fit()
    out = [fitted.apply(x.astype(np.float64)).forecast(horizon) for x in test_x]
    return np.asarray(out, np.float32)


# --- the RNN --------------------------------------------------------------------------

def init_model(key, cell_name: str, hidden: int, horizon: int):
    cell = cells.make(cell_name, hidden)
    k1, k2 = jax.random.split(key)
    return cell, {"cell": cell.init(k1, 1), "out": _common.dense_init(k2, hidden, horizon)}


def predict(cell, params, x):
    """Forecasts ``(N, horizon)`` for windows ``x (N, W)``: the last step of
    :func:`predict_all` (in either mode)."""
    return predict_all(cell, params, x)[:, -1]


def predict_all(cell, params, x):
    """Per-step predictions ``(N, W, horizon)``; the last step is the forecast.

    Level removal: the network sees ``x - x[:, -1:]`` and predicts the change from the
    window's last value ``s[t]``, which is added back, so a zero output is the naive
    forecast and the model does not depend on the level of a drifting series.
    """
    x = jnp.asarray(x)
    last = x[:, -1:, None]
    hs, _ = run(cell, params["cell"], (x[..., None] - last))
    return _common.dense(params["out"], hs) + last


def train_rnn(xtr, ytr, *, mode="vector", cell_name="gru", hidden=32, steps=400,
              batch=64, lr=3e-3, seed=0, log_every=0, print_fn=print):
    """Fit the forecaster on training windows; ``mode`` as in the module docstring.

    For ``"seq"`` the per-step targets of window ``x = s[t-W+1..t]`` are
    ``s[i+1..i+h]`` for each ``i`` in the window, built from ``x`` and ``y``.
    """
    check_choice("mode", mode, MODES)
    horizon = ytr.shape[1]
    cell, params = init_model(jax.random.key(seed), cell_name, hidden, horizon)
    full = np.concatenate([xtr, ytr], 1)  # (N, W + h): s[t-W+1 .. t+h]
    W = xtr.shape[1]
    seq_targets = np.stack([full[:, i + 1:i + 1 + horizon] for i in range(W)], 1)
    X, Y, YS = jnp.asarray(xtr), jnp.asarray(ytr), jnp.asarray(seq_targets)
    batch_fn = _common.random_rows(X, Y, YS, batch=batch)

    def loss(p, b):
        x, y, ys = b
        pred = predict_all(cell, p, x)
        if mode == "vector":
            return jnp.mean((pred[:, -1] - y) ** 2)
        return jnp.mean((pred - ys) ** 2)

    params, losses = fit(loss, params, batch_fn, steps=steps, lr=lr,
                                 key=jax.random.key(seed + 1), log_every=log_every,
                                 print_fn=print_fn, name="mse")
    return cell, params, losses


# --- the pipeline ---------------------------------------------------------------------

def _plot(path, truth, preds, title, horizon):
    fig = figures.figure(figsize=(9, 3.5))
    ax = fig.add_subplot()
    t = np.arange(len(truth))
    ax.plot(t, truth, color="black", linewidth=2, label="truth")
    for name, p in preds.items():
        ax.plot(t, p, linewidth=1, label=name)
    ax.set_xlabel("test step")
    ax.set_ylabel(f"value ({horizon} step{'s' if horizon > 1 else ''} ahead)")
    ax.set_title(title)
    ax.legend(fontsize=8, ncol=len(preds) + 1)
    figures.save(fig, path)


@writes_out(reads=("csv_path",))
def run_forecast(out, *, series="sines", csv_path=None, column=None, n=1200, window=48,
                 horizon=4, test_fraction=0.25, modes=MODES, cell_name="gru", hidden=32,
                 steps=400, batch=64, lr=3e-3, ar_order=8, seed=0, print_fn=print):
    """The ``rnnjax forecast`` pipeline.  Writes ``forecast.png`` (``horizon``-step-ahead
    forecasts against the truth on the test part), ``forecast.md`` (MSE table, in
    original units) and ``forecast.json``; returns the summary dict."""
    for name, v in (("n", n), ("window", window), ("horizon", horizon),
                    ("ar_order", ar_order), ("steps", steps), ("hidden", hidden)):
        check_positive_int(name, v)
    check_fraction("test_fraction", test_fraction)
    if ar_order > window:
        raise ValueError(f"ar_order must be <= window ({window}), got {ar_order}")
    for m in modes:
        check_choice("mode", m, MODES)
    _common.check_fit(steps=steps, batch=batch, lr=lr)
    out = _common.out_dir(out)
    season = None
    if csv_path is not None:
        raw = read_csv_column(csv_path, 0 if column is None else column)
        label = f"{os.path.basename(os.fspath(csv_path))}[{column}]"
    elif series in REAL:
        raw, season = load_real_series(series)
        label = series
    else:
        check_choice("series", series, SERIES)
        raw = sines(n, seed=seed) if series == "sines" else seasonal_walk(n, seed=seed)
        season = None if series == "sines" else 24
        label = series
    need = window + horizon
    cut_check = int(round(len(raw) * (1.0 - test_fraction)))
    if min(cut_check, len(raw) - cut_check) < need:
        raise ValueError(f"test_fraction={test_fraction} splits the {len(raw)} values of "
                         f"{label} into {cut_check} training and {len(raw) - cut_check} "
                         f"test values; window + horizon = {need} needs at least {need} "
                         f"in each part")
    out = _common.out_dir(out)  # after every check: a refused call writes nothing
    cut0 = int(round(len(raw) * (1.0 - test_fraction)))
    mu, sd = float(raw[:cut0].mean()), float(raw[:cut0].std() or 1.0)
    s = (raw - mu) / sd
    (xtr, ytr), (xte, yte), cut = split(s, window, horizon, test_fraction)

    preds = {"last value": naive_forecast(xte, horizon)}
    if season is not None and season <= window:
        preds[f"seasonal naive (m={season})"] = seasonal_naive(xte, horizon, season)
    c, a = fit_ar(s[:cut], ar_order)
    preds[f"AR({ar_order})"] = ar_forecast(c, a, xte, horizon)
    arma = arma_forecast(s[:cut], xte, horizon)
    if arma is None:
        print_fn("note: statsmodels is not installed; the ARMA comparison is skipped")
    else:
        preds["ARMA(2,1)"] = arma
    curves = {}
    for m in modes:
        cell, params, losses = train_rnn(xtr, ytr, mode=m, cell_name=cell_name,
                                         hidden=hidden, steps=steps, batch=batch, lr=lr,
                                         seed=seed)
        preds[f"{cell_name} seq2{'vec' if m == 'vector' else 'seq'}"] = np.asarray(
            predict(cell, params, xte))
        curves[m] = losses
    mse = {k: float(np.mean((v - yte) ** 2)) * sd ** 2 for k, v in preds.items()}
    mse_h = {k: (np.mean((v - yte) ** 2, 0) * sd ** 2).tolist() for k, v in preds.items()}
    mases = {k: mase(v, yte, s[:cut], season) for k, v in preds.items()}

    lines = [f"# Forecasting {label}: window {window}, horizon {horizon}", "",
             f"{len(xtr)} training and {len(xte)} test windows; MSE in the series' units, "
             f"averaged over the horizon; MASE scaled by the in-sample "
             f"{'seasonal (m=' + str(season) + ') ' if season else ''}naive error.", "",
             "| method | MSE | MSE / last-value | MASE |", "|---|---|---|---|"]
    base = mse["last value"]
    for k, v in sorted(mse.items(), key=lambda kv: kv[1]):
        lines.append(f"| {k} | {v:.5g} | {v / base:.3f} | {mases[k]:.3f} |")
    md = os.path.join(out, "forecast.md")
    with atomic_open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    png = os.path.join(out, "forecast.png")
    _plot(png, yte[:, -1] * sd + mu, {k: v[:, -1] * sd + mu for k, v in preds.items()},
          f"{label}: {horizon}-step-ahead forecasts on the test part", horizon)
    summary = {"series": label, "window": window, "horizon": horizon, "cell": cell_name,
               "hidden": hidden, "steps": steps, "train_windows": len(xtr),
               "test_windows": len(xte), "mse": mse, "mse_per_horizon": mse_h,
               "mase": mases, "season": season,
               "final_train_loss": {m: v[-1] for m, v in curves.items()},
               "arma": arma is not None}
    _common.write_json(os.path.join(out, "forecast.json"), summary)
    print_fn("\n".join(lines[4:]))
    print_fn(f"wrote {png} and {md}")
    return summary


__all__ = ["MODES", "REAL", "SERIES", "SYNTHETIC", "ar_forecast", "arma_forecast", "fit_ar",
           "init_model", "load_real_series", "mase", "naive_forecast", "seasonal_naive",
           "predict", "predict_all", "read_csv_column", "run_forecast",
           "seasonal_walk", "sines", "split", "train_rnn", "windows"]
