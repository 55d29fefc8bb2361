"""rnnjax colors: determinism, range, the closed-form first step, training, the CLI."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from rnnjax import cli
from rnnjax.apps import colors

SEEDS = np.array([[0.9, 0.2, 0.3], [0.1, 0.6, 0.5], [1.0, 1.0, 1.0]], np.float32)


def test_default_weights_follow_the_docstring():
    """The docstring's distributions, checked without re-deriving how ``init`` splits its
    key: exact relations where it states them, sample statistics with a 4-sigma margin
    (H = 64: the std of a sample std of n normals is about 1/sqrt(2n))."""
    H = 64
    p = colors.init(jax.random.key(42), H)
    assert jax.tree.all(jax.tree.map(np.array_equal, p, colors.init(jax.random.key(42), H)))
    other = colors.init(jax.random.key(43), H)
    assert not np.array_equal(p["cell"]["W_xh"], other["cell"]["W_xh"])
    W_xh = np.asarray(p["cell"]["W_xh"], np.float64)  # N(0, 1), n = 192
    assert W_xh.shape == (H, 3) and abs(W_xh.std() - 1.0) < 4 / np.sqrt(2 * W_xh.size)
    np.testing.assert_allclose(p["cell"]["b"], -0.5 * W_xh.sum(1), rtol=1e-6, atol=1e-6)
    # W_hh = expm(S(A)) for A ~ 0.5 N(0, 1) / sqrt(H): orthogonal, a slow rotation whose
    # logarithm is skew with entries of std 0.5 / sqrt(H) (n = H (H - 1) / 2 = 2016)
    W_hh = np.asarray(p["cell"]["W_hh"], np.float64)
    np.testing.assert_allclose(W_hh.T @ W_hh, np.eye(H), atol=1e-5)
    S = scipy.linalg.logm(W_hh).real
    np.testing.assert_allclose(S, -S.T, atol=1e-5)
    upper = S[np.triu_indices(H, 1)]
    assert abs(upper.std() / (0.5 / np.sqrt(H)) - 1.0) < 4 / np.sqrt(2 * upper.size)
    W_hy = np.asarray(p["W_hy"], np.float64)  # 0.5 N(0, 1) / sqrt(H), n = 192
    assert W_hy.shape == (3, H)
    assert abs(W_hy.std() / (0.5 / np.sqrt(H)) - 1.0) < 4 / np.sqrt(2 * W_hy.size)
    np.testing.assert_array_equal(p["b_y"], np.full(3, 0.5))
    # the pre-activation of the first step is zero at mid grey
    np.testing.assert_allclose(colors.first_step(p, np.full(3, 0.5, np.float32)), [0.5] * 3,
                               atol=1e-6)


def _collapsing_init(key, H=16):
    """The first version's init: W_hh = 0.5 I + 0.1 N, b_h = 0, W_hy ~ 0.4 N, b_y = 0.5."""
    k1, k2, k3 = jax.random.split(key, 3)
    return {"cell": {"W_xh": 0.3 * jax.random.normal(k1, (H, 3), jnp.float32),
                     "W_hh": 0.5 * jnp.eye(H, dtype=jnp.float32)
                     + 0.1 * jax.random.normal(k2, (H, H), jnp.float32),
                     "b": jnp.zeros((H,), jnp.float32)},
            "W_hy": 0.4 * jax.random.normal(k3, (3, H), jnp.float32),
            "b_y": jnp.full((3,), 0.5, jnp.float32)}


def _mode_fraction(g):
    """Largest fraction of all generated colours within 0.05 (RGB distance) of one of them."""
    flat = np.asarray(g).reshape(-1, 3)
    return (np.linalg.norm(flat[:, None] - flat[None], axis=-1) < 0.05).mean(1).max()


def test_palette_distance_is_the_mean_pairwise_distance():
    g = np.zeros((3, 2, 3))
    g[1, :, 0] = 0.3          # 0.3 from palette 0
    g[2, 0, 1] = 0.4          # (0.4 + 0) / 2 from palette 0, (0.5 + 0.3) / 2 from palette 1
    assert colors.palette_distance(g) == pytest.approx((0.3 + 0.2 + 0.4) / 3)
    assert colors.palette_distance(np.ones((4, 5, 3))) == 0.0
    with pytest.raises(ValueError, match="colors must have shape"):
        colors.palette_distance(np.zeros((1, 5, 3)))


@pytest.mark.parametrize("key", [42, 0, 1, 2, 3, 4])
def test_palettes_from_different_seeds_stay_apart(key):
    # The first init sent every seed to the same fixed point (#ff00ff): palettes 0.03 apart
    # and 82% of all colours one colour.  The default init keeps them apart at H = 16.
    seeds = np.stack([colors.parse_color(s) for s in colors.DEFAULT_SEEDS])
    old = colors.generate(_collapsing_init(jax.random.key(key)), seeds, 24)
    assert colors.palette_distance(old) < 0.06 and _mode_fraction(old) > 0.5
    new = colors.generate(colors.init(jax.random.key(key)), seeds, 24)
    assert colors.palette_distance(new) > 0.2
    assert _mode_fraction(new) < 0.4
    if key == 42:   # the command's default
        assert colors.palette_distance(new) > 0.5 and _mode_fraction(new) < 0.1


def test_deterministic_for_a_seed_and_in_unit_range():
    a = colors.generate(colors.init(jax.random.key(42)), SEEDS, 30)
    b = colors.generate(colors.init(jax.random.key(42)), SEEDS, 30)
    c = colors.generate(colors.init(jax.random.key(7)), SEEDS, 30)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    for t in (0.25, 1.0, 4.0):
        for s in (0.5, 3.0):
            ys = np.asarray(colors.generate(colors.init(jax.random.key(42), 16, s), SEEDS, 30, t))
            assert ys.shape == (3, 30, 3) and ys.min() >= 0.0 and ys.max() <= 1.0


@pytest.mark.parametrize("temperature", [1.0, 0.5, 3.0])
def test_first_colour_is_one_step_of_the_cell_in_closed_form(temperature):
    p = jax.tree.map(lambda a: a.astype(jnp.float64), colors.init(jax.random.key(42), 16))
    x0 = SEEDS.astype(np.float64)
    # numpy, independent of the library: h1 = tanh((W_xh x0 + W_hh 0 + b_h) / T)
    W_xh, b_h = np.asarray(p["cell"]["W_xh"]), np.asarray(p["cell"]["b"])
    h1 = np.tanh((x0 @ W_xh.T + b_h) / temperature)
    y1 = np.clip(h1 @ np.asarray(p["W_hy"]).T + np.asarray(p["b_y"]), 0.0, 1.0)
    ys = colors.generate(p, x0, 5, temperature)
    np.testing.assert_allclose(ys[:, 0], y1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(colors.first_step(p, x0[0], temperature), y1[0], rtol=1e-12)
    # and the second step feeds y1 back: h2 = tanh((W_xh y1 + W_hh h1) / T)
    h2 = np.tanh((y1 @ W_xh.T + h1 @ np.asarray(p["cell"]["W_hh"]).T + b_h) / temperature)
    y2 = np.clip(h2 @ np.asarray(p["W_hy"]).T + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(ys[:, 1], y2, rtol=1e-12, atol=1e-12)


def test_parse_and_bad_input():
    np.testing.assert_allclose(colors.parse_color("#ff8000"), [1.0, 128 / 255, 0.0])
    np.testing.assert_allclose(colors.parse_color("0.1,0.2,0.3"), [0.1, 0.2, 0.3])
    assert colors.to_hex([1.0, 0.0, 0.5]) == "#ff0080"
    with pytest.raises(ValueError, match="colour"):
        colors.parse_color("#12345")
    p = colors.init(jax.random.key(0))
    with pytest.raises(ValueError, match="temperature"):
        colors.generate(p, SEEDS, 3, 0.0)
    with pytest.raises(ValueError, match="seeds"):
        colors.generate(p, np.zeros((2, 4)), 3)
    with pytest.raises(ValueError, match="hidden_size"):
        colors.init(jax.random.key(0), 0)


def test_training_imitates_palettes(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("# gradients\n#000000 #333333 #666666 #999999\n"
                 "#ff0000 #cc0000 #990000 #660000\n#0000ff #3333ff #6666ff #9999ff\n")
    data = colors.read_palettes(f)
    assert data.shape == (3, 4, 3)
    p = colors.init(jax.random.key(42), 16)
    before = colors.free_running_mse(p, data)
    p, losses = colors.train(p, data, steps=150, lr=2e-2)
    after = colors.free_running_mse(p, data)
    assert losses[-1] < 0.2 * losses[0]
    assert after < 0.25 * before, (before, after)
    bad = tmp_path / "bad.txt"
    bad.write_text("#000000 #111111\n#000000\n")
    with pytest.raises(ValueError, match="same length"):
        colors.read_palettes(bad)


def test_cli_writes_png_and_json(tmp_path, capsys):
    rc = cli.main(["colors", "--out", str(tmp_path), "--length", "6",
                   "--seeds", "#ff0000", "0.2,0.4,0.6"])
    assert rc == 0
    assert (tmp_path / "colors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "colors.json").read_text())
    assert list(summary["palettes"]) == ["#ff0000", "#336699"]
    p = colors.init(jax.random.key(42), 16)
    expected = colors.generate(p, np.array([[1.0, 0, 0]], np.float32), 6)[0]
    assert summary["palettes"]["#ff0000"] == [colors.to_hex(c) for c in expected]
    assert "#ff0000" in capsys.readouterr().out
    assert cli.main(["colors", "--out", str(tmp_path), "--seeds", "nonsense"]) == 2


def test_cli_default_out_is_a_new_folder_per_run(tmp_path, monkeypatch, capsys):
    from rnnjax.io import outputs
    monkeypatch.chdir(tmp_path)
    stamps = iter(["20260101-000000", "20260101-000001"])
    monkeypatch.setattr(outputs.time, "strftime", lambda fmt: next(stamps))
    argv = ["colors", "--length", "3", "--seeds", "#ff0000", "#00ff00"]
    assert cli.main(argv) == 0 and cli.main(argv) == 0
    for stamp in ("20260101-000000", "20260101-000001"):
        summary = json.loads((tmp_path / "runs" / "colors" / stamp / "colors.json").read_text())
        assert summary["palette_distance"] == pytest.approx(colors.palette_distance(
            np.array([[colors.parse_color(c) for c in row]
                      for row in summary["palettes"].values()])),
            abs=0.01)  # hex rounding
    assert "mean distance between palettes" in capsys.readouterr().out
    # an explicit --out that holds files: refused, offering --overwrite (colors cannot resume)
    assert cli.main(argv + ["--out", "runs/colors/20260101-000000"]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--resume" not in err
