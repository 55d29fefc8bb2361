"""``rnnjax forecast``: RNN forecasting against last-value, AR and (optional) ARMA."""

from __future__ import annotations

from rnnjax.apps import forecast
from rnnjax.cli.options import add_function_options, function_kwargs
from rnnjax.io.outputs import default_out

# (option, parameter of run_forecast, argparse keywords): the defaults are the function's.
_OPTIONS = [
    ("--series", "series", {"choices": list(forecast.SERIES),
                            "help": "synthetic (sines: noisy sum of sines; walk: random walk "
                                    "+ season) or a statsmodels dataset (sunspots, co2, "
                                    "elnino, nile; needs the data extra)"}),
    ("--csv", "csv_path", {"help": "forecast a column of this CSV file instead"}),
    ("--column", "column", {"help": "CSV column: header name or 0-based index"}),
    ("--n", "n", {"type": int, "help": "length of a synthetic series"}),
    ("--window", "window", {"type": int}),
    ("--horizon", "horizon", {"type": int}),
    ("--test-fraction", "test_fraction", {"type": float}),
    ("--modes", "modes", {"nargs": "+", "choices": ["vector", "seq"],
                          "help": "sequence-to-vector and/or sequence-to-sequence training"}),
    ("--cell", "cell_name", {"choices": ["elman", "irnn", "lstm", "gru"]}),
    ("--hidden", "hidden", {"type": int}),
    ("--steps", "steps", {"type": int}),
    ("--batch", "batch", {"type": int}),
    ("--lr", "lr", {"type": float}),
    ("--ar-order", "ar_order", {"type": int}),
    ("--seed", "seed", {"type": int}),
]


def _run(a):
    out = a.out or default_out("forecast")
    forecast.run_forecast(out, overwrite=a.overwrite, **function_kwargs(a, a.options))
    return 0


def register(sub):
    p = sub.add_parser("forecast", help="time-series forecasting: RNN vs last value, AR, ARMA "
                                        "(plot + MSE table)",
                       description="Forecast a series with GRUs beside last value, seasonal "
                       "naive, AR(p) and ARMA; writes forecast.png and forecast.md.")
    p.add_argument("--out", default=None,
                   help="output folder (default runs/forecast/YYYYmmdd-HHMMSS, a new one "
                        "per run)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run of this command in a non-empty --out (any other "
                        "folder is refused)")
    p.set_defaults(func=_run, options=add_function_options(p, forecast.run_forecast,
                                                           _OPTIONS))


__all__ = ["register"]
