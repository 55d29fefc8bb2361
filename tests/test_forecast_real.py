"""rnnjax forecast on statsmodels' shipped series: loaders, ARMA fitted for real, MASE,
refusals."""

import json

import numpy as np
import pytest

pytest.importorskip("statsmodels")

from rnnjax.apps import forecast  # noqa: E402
from rnnjax.cli import main  # noqa: E402


@pytest.mark.parametrize("name,length,season", [("sunspots", 309, 11), ("co2", 2284, 52),
                                                ("elnino", 732, 12), ("nile", 100, None)])
def test_real_series_load(name, length, season):
    v, m = forecast.load_real_series(name)
    assert v.shape == (length,) and m == season and np.all(np.isfinite(v))
    np.testing.assert_array_equal(v, forecast.load_real_series(name)[0])


def test_sunspot_values_and_elnino_order():
    v, _ = forecast.load_real_series("sunspots")
    assert (v[0], v[-1]) == (5.0, pytest.approx(2.9))  # 1700 and 2008
    import statsmodels.api as sm
    df = sm.datasets.elnino.load_pandas().data
    e, _ = forecast.load_real_series("elnino")
    assert e[13] == pytest.approx(df["FEB"][1])  # year 2, February


def test_mase_and_seasonal_naive_by_hand():
    x = np.arange(10.0)[None]  # one window 0..9
    np.testing.assert_array_equal(forecast.seasonal_naive(x, 5, 3), [[7, 8, 9, 7, 8]])
    train = np.array([0.0, 1.0, 3.0, 6.0])  # |diffs| at lag 1: 1, 2, 3 -> scale 2
    assert forecast.mase(np.array([1.0, 2.0]), np.array([2.0, 5.0]), train) == 1.0


def test_arma_is_fitted_and_beats_last_value_on_sunspots(tmp_path):
    s = forecast.run_forecast(str(tmp_path), series="sunspots", window=24, horizon=4,
                              modes=(), print_fn=lambda *a: None)
    assert s["arma"] and s["season"] == 11
    mse, mase = s["mse"], s["mase"]
    # The 11-year cycle: 4 years ahead, ARMA(2,1) and AR(8) are far better than repeating
    # the last value (measured: ARMA 0.39, AR 0.21 of its MSE).
    assert mse["ARMA(2,1)"] < 0.6 * mse["last value"]
    assert mse["AR(8)"] < 0.4 * mse["last value"]
    assert mase["ARMA(2,1)"] < mase["last value"]
    saved = json.loads((tmp_path / "forecast.json").read_text())
    assert saved["mase"] == pytest.approx(mase)
    assert (tmp_path / "forecast.png").stat().st_size > 0


def test_unknown_series_refused(tmp_path, capsys):
    with pytest.raises(ValueError, match=r"series must be one of .*'sunspots'.*got 'sunspot'"):
        forecast.run_forecast(str(tmp_path / "o"), series="sunspot", modes=())
    assert not (tmp_path / "o").exists()
    with pytest.raises(SystemExit) as e:
        main(["forecast", "--series", "sunspot", "--out", str(tmp_path / "c")])
    assert e.value.code == 2
    assert "invalid choice: 'sunspot'" in capsys.readouterr().err


def test_split_too_small_refused(tmp_path):
    with pytest.raises(ValueError, match="window \\+ horizon = 52 needs at least 52"):
        forecast.run_forecast(str(tmp_path / "o"), series="nile", window=48, horizon=4,
                              modes=())
    assert not (tmp_path / "o").exists()
