"""rnnjax forecast: baselines against closed forms, the CLI beats last value."""

import json

import numpy as np
import pytest

from rnnjax import cli
from rnnjax.apps import forecast


def test_windows_and_split_do_not_leak():
    s = np.arange(20, dtype=np.float32)
    x, y = forecast.windows(s, 4, 2)
    np.testing.assert_array_equal(x[0], [0, 1, 2, 3])
    np.testing.assert_array_equal(y[0], [4, 5])
    np.testing.assert_array_equal(y[-1], [18, 19])
    (xtr, ytr), (xte, yte), cut = forecast.split(s, 4, 2, 0.25)
    assert cut == 15 and ytr.max() < cut <= yte.min()
    np.testing.assert_array_equal(xte[0], [11, 12, 13, 14])
    with pytest.raises(ValueError, match="window"):
        forecast.windows(s, 19, 2)


def test_naive_and_ar_forecasts_are_exact_on_known_processes():
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    np.testing.assert_array_equal(forecast.naive_forecast(x, 3), [[3, 3, 3]])
    # s_t = 0.5 + 0.8 s_{t-1} - 0.3 s_{t-2} exactly: least squares recovers it
    s = [1.0, 2.0]
    for _ in range(60):
        s.append(0.5 + 0.8 * s[-1] - 0.3 * s[-2])
    s = np.asarray(s)
    c, a = forecast.fit_ar(s, 2)
    np.testing.assert_allclose([c, *a], [0.5, 0.8, -0.3], atol=1e-8)
    pred = forecast.ar_forecast(c, a, s[None, 10:20], 3)
    np.testing.assert_allclose(pred[0], s[20:23], rtol=1e-5)


def test_series_and_csv(tmp_path):
    a, b = forecast.sines(100, seed=1), forecast.sines(100, seed=1)
    np.testing.assert_array_equal(a, b)
    noiseless = forecast.sines(50, periods=(10.0,), noise=0.0, seed=3)
    np.testing.assert_allclose(noiseless[:40], noiseless[10:50], atol=1e-5)  # period 10
    f = tmp_path / "d.csv"
    f.write_text("day,temp\n1,3.5\n2,4.0\n3,-1\n")
    np.testing.assert_array_equal(forecast.read_csv_column(f, "temp"), [3.5, 4.0, -1.0])
    np.testing.assert_array_equal(forecast.read_csv_column(f, "0"), [1, 2, 3])
    with pytest.raises(ValueError, match="column"):
        forecast.read_csv_column(f, "pressure")


def test_arma_is_optional():
    try:
        import statsmodels  # noqa: F401
    except ImportError:
        assert forecast.arma_forecast(np.zeros(50), np.zeros((2, 10)), 3) is None


@pytest.mark.parametrize("series,modes", [("sines", ["vector", "seq"]), ("walk", ["seq"])])
def test_cli_rnn_beats_last_value(tmp_path, capsys, series, modes):
    rc = cli.main(["forecast", "--out", str(tmp_path), "--series", series, "--n", "400",
                   "--window", "16", "--horizon", "3", "--hidden", "16", "--steps", "120",
                   "--modes", *modes])
    assert rc == 0
    s = json.loads((tmp_path / "forecast.json").read_text())
    mse = s["mse"]
    names = {"vector": "gru seq2vec", "seq": "gru seq2seq"}
    assert set(mse) >= {"last value", "AR(8)"} | {names[m] for m in modes}
    for m in modes:
        assert mse[names[m]] < 0.8 * mse["last value"], mse
    assert mse["AR(8)"] < mse["last value"], mse
    assert (tmp_path / "forecast.png").stat().st_size > 1000
    table = (tmp_path / "forecast.md").read_text()
    assert "| last value |" in table and "| 1.000 |" in table
    out = capsys.readouterr().out
    assert names[modes[0]] in out


def test_cli_csv_and_errors(tmp_path):
    vals = forecast.sines(240, seed=2)
    f = tmp_path / "x.csv"
    f.write_text("v\n" + "\n".join(f"{v:.5f}" for v in vals) + "\n")
    assert cli.main(["forecast", "--out", str(tmp_path / "o"), "--csv", str(f), "--column",
                     "v", "--window", "16", "--steps", "2", "--hidden", "4",
                     "--modes", "seq"]) == 0
    s = json.loads((tmp_path / "o" / "forecast.json").read_text())
    assert s["series"] == "x.csv[v]" and s["test_windows"] == 60 - 4 + 1
    assert cli.main(["forecast", "--out", str(tmp_path), "--ar-order", "99"]) == 2
