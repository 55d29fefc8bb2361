"""``rnnjax forecast``: RNN forecasting against last-value, AR and (optional) ARMA."""

from __future__ import annotations

from rnnjax.apps import forecast
from rnnjax.io.outputs import default_out


def _run(a):
    out = a.out or default_out("forecast")
    forecast.run_forecast(out, series=a.series, csv_path=a.csv, column=a.column, n=a.n,
                          window=a.window, horizon=a.horizon, test_fraction=a.test_fraction,
                          modes=a.modes, cell_name=a.cell, hidden=a.hidden, steps=a.steps,
                          batch=a.batch, lr=a.lr, ar_order=a.ar_order, seed=a.seed,
                          overwrite=a.overwrite)
    return 0


def register(sub):
    p = sub.add_parser("forecast", help="time-series forecasting: RNN vs last value, AR, ARMA "
                                        "(plot + MSE table)")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/forecast/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.add_argument("--series", default="sines", choices=list(forecast.SERIES),
                   help="synthetic (sines: noisy sum of sines; walk: random walk + season) "
                        "or a statsmodels dataset (sunspots, co2, elnino, nile; needs the "
                        "data extra)")
    p.add_argument("--csv", default=None, help="forecast a column of this CSV file instead")
    p.add_argument("--column", default=None, help="CSV column: header name or 0-based index")
    p.add_argument("--n", type=int, default=1200, help="length of a synthetic series")
    p.add_argument("--window", type=int, default=48)
    p.add_argument("--horizon", type=int, default=4)
    p.add_argument("--test-fraction", type=float, default=0.25)
    p.add_argument("--modes", nargs="+", default=["vector", "seq"], choices=["vector", "seq"],
                   help="sequence-to-vector and/or sequence-to-sequence training")
    p.add_argument("--cell", default="gru", choices=["elman", "irnn", "lstm", "gru"])
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ar-order", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_run)


__all__ = ["register"]
