"""rnnjax seq2seq: task data, attention equations, greedy decoding, reverse > 90%."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import cli
from rnnjax.apps import seq2seq


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_batches_match_the_task(task):
    src, tgt, lens = map(np.asarray, seq2seq.make_batch(jax.random.key(0), task, 32, 1, 6, T=7))
    assert src.shape == tgt.shape == (32, 7) and lens.min() >= 1 and lens.max() <= 6
    for s, t, L in zip(src, tgt, lens):
        want = s[:L][::-1] if task == "reverse" else np.sort(s[:L])
        np.testing.assert_array_equal(t[:L], want)
        assert not s[L:].any() and not t[L:].any()


@pytest.mark.parametrize("attention", ["additive", "dot"])
def test_attention_and_greedy_decoding(attention):
    p = jax.tree.map(lambda a: a.astype(jnp.float64),
                     seq2seq.init(jax.random.key(1), 10, 8, 4, attention))
    src, tgt, lens = seq2seq.make_batch(jax.random.key(2), "reverse", 5, 1, 5, T=6)
    lg, a = seq2seq.decode(p, src, lens, attention=attention)
    a = np.asarray(a)
    mask = np.arange(6)[None, None, :] < np.asarray(lens)[:, None, None]
    np.testing.assert_allclose(a.sum(-1), 1.0, rtol=1e-12)  # a distribution over j < L
    assert np.all(a[~np.broadcast_to(mask, a.shape)] == 0.0)
    if attention == "dot":  # the remaining checks do not depend on the score function
        return
    # greedy decoding = teacher forcing with its own argmax outputs
    greedy = jnp.argmax(lg, -1)
    lg_tf, a_tf = seq2seq.decode(p, src, lens, greedy, attention=attention)
    np.testing.assert_allclose(lg_tf, lg, rtol=1e-12)
    # padding the source changes nothing for the valid part
    wide = jnp.pad(src, ((0, 0), (0, 3)), constant_values=7)
    lg_w, _ = seq2seq.decode(p, wide, lens, attention=attention, T_out=6)
    np.testing.assert_allclose(lg_w, lg, rtol=1e-10)


def test_first_attention_weights_in_closed_form():
    p = jax.tree.map(lambda a: a.astype(jnp.float64),
                     seq2seq.init(jax.random.key(3), 10, 8, 4, "additive"))
    src = jnp.array([[3, 1, 4, 0]])
    lens = jnp.array([3], jnp.int32)
    _, a = seq2seq.decode(p, src, lens, attention="additive")
    layer = seq2seq.bidirectional(seq2seq.cells.gru(8))
    hs, fin = layer.apply(p["encoder"], p["src_embed"][src], lengths=lens)
    s0 = np.tanh(p["init"]["W"] @ np.concatenate([fin["fwd"].h[0], fin["bwd"].h[0]])
                 + p["init"]["b"])
    e = np.tanh(p["att"]["W_s"] @ s0 + np.asarray(hs[0, :3]) @ np.asarray(p["att"]["U_h"]).T) \
        @ p["att"]["v"]
    want = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
    np.testing.assert_allclose(a[0, 0, :3], want, rtol=1e-10)


def test_cli_reverse_beats_90_percent(tmp_path, capsys):
    rc = cli.main(["seq2seq", "--out", str(tmp_path), "--task", "reverse", "--hidden", "32",
                   "--embed", "16", "--min-len", "2", "--max-len", "4", "--eval-max-len",
                   "6", "--steps", "150", "--attention", "dot"])
    assert rc == 0
    s = json.loads((tmp_path / "seq2seq.json").read_text())
    assert s["token_accuracy_trained_lengths"] > 0.9, s["accuracy"]
    # chance is 1/10 per token
    assert all(s["accuracy"][str(L)]["token"] > 0.9 for L in (2, 3, 4)), s["accuracy"]
    rows = (tmp_path / "seq2seq.csv").read_text().splitlines()
    assert rows[0].startswith("length,token_accuracy") and len(rows) == 7
    assert (tmp_path / "seq2seq.png").stat().st_size > 1000
    assert "token accuracy" in capsys.readouterr().out
    assert cli.main(["seq2seq", "--out", str(tmp_path), "--min-len", "5",
                     "--max-len", "3"]) == 2
