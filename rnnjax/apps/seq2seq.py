r"""Encoder-decoder with attention (Bahdanau, Cho & Bengio 2015; Luong et al. 2015) on
synthetic tasks: reverse a sequence of digits, or sort it.

Encoder: a bidirectional GRU over the embedded source ``x_1 .. x_L`` (padded to ``T``,
masked by ``lengths``), states ``h_j = [h_j^fwd, h_j^bwd]`` (``2H``).  Decoder: a GRU cell
(``rnnjax.cells.gru``) with state ``s_t``, ``s_0 = tanh(W_0 [h_L^fwd, h_1^bwd] + b_0)``,
and at output step ``t``::

    e_tj = v^T tanh(W_s s_{t-1} + U_h h_j)            additive (Bahdanau), or
    e_tj = s_{t-1}^T (W_k h_j) / sqrt(H)              scaled dot product ("dot")
    a_tj = softmax_j(e_tj)   over j < L only (the padding is masked)
    c_t  = sum_j a_tj h_j
    s_t  = GRU(s_{t-1}, [D[y_{t-1}], c_t])           y_0 = BOS
    p(y_t | ...) = softmax(W_o [s_t, c_t] + b_o)

``U_h h_j`` (or ``W_k h_j``) is computed once per sequence, outside the decoder scan.
Training uses teacher forcing (``y_{t-1}`` is the true previous token) and the masked
mean cross-entropy over the ``L`` output steps (the output has the input's length);
evaluation decodes greedily (``y_{t-1}`` = argmax of the previous step).
"""

from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import cells
from rnnjax.apps import _common
from rnnjax.core.cell import HiddenState
from rnnjax.core.checks import check_choice, check_positive_int
from rnnjax.io.outputs import atomic_open, writes_out
from rnnjax.layers import bidirectional
from rnnjax.plots import figures
from rnnjax.training.update import fit

TASKS = ("reverse", "sort")
ATTENTION = ("additive", "dot")


def make_batch(key, task, batch, min_len, max_len, n_symbols=10, T=None):
    """Source ``(B, T)`` digits, target ``(B, T)`` and ``lengths (B,)`` (padding 0)."""
    T = max_len if T is None else T
    k1, k2 = jax.random.split(key)
    lengths = jax.random.randint(k1, (batch,), min_len, max_len + 1)
    src = jax.random.randint(k2, (batch, T), 0, n_symbols)
    t = jnp.arange(T)
    valid = t[None, :] < lengths[:, None]
    src = jnp.where(valid, src, 0)
    if task == "reverse":
        idx = jnp.where(valid, lengths[:, None] - 1 - t[None, :], t[None, :])
        tgt = jnp.take_along_axis(src, idx, 1)
    else:  # sort: padding pushed to the end by a key above every symbol
        tgt = jnp.sort(jnp.where(valid, src, n_symbols), axis=1)
    return src, jnp.where(valid, tgt, 0), lengths.astype(jnp.int32)


def init(key, n_symbols=10, hidden=64, embed=32, attention="additive"):
    """Params for the encoder, decoder, attention and readout (see the module doc)."""
    check_choice("attention", attention, ATTENTION)
    H = hidden
    ks = jax.random.split(key, 8)
    enc = bidirectional(cells.gru(H))
    dec = cells.gru(H)
    p = {"src_embed": 0.3 * jax.random.normal(ks[0], (n_symbols, embed), jnp.float32),
         "tgt_embed": 0.3 * jax.random.normal(ks[1], (n_symbols + 1, embed), jnp.float32),
         "encoder": enc.init(ks[2], embed),
         "decoder": dec.init(ks[3], embed + 2 * H),
         "init": _common.dense_init(ks[4], 2 * H, H),
         "out": _common.dense_init(ks[5], 3 * H, n_symbols)}
    if attention == "additive":
        p["att"] = {"W_s": _common.dense_init(ks[6], H, H)["W"],
                    "U_h": _common.dense_init(ks[7], 2 * H, H)["W"],
                    "v": jax.random.normal(ks[0], (H,), jnp.float32) / math.sqrt(H)}
    else:
        p["att"] = {"W_k": _common.dense_init(ks[6], 2 * H, H)["W"]}
    return p


def _sizes(params):
    H = params["init"]["W"].shape[0]
    return H, params["src_embed"].shape[0]


@functools.partial(jax.jit, static_argnames=("attention", "T_out"))
def decode(params, src, lengths, teacher=None, *, attention="additive", T_out=None):
    """Run the model; return ``(logits (B, T_out, V), attention (B, T_out, T))``.

    ``teacher (B, T_out)``: the true target tokens for teacher forcing; ``None`` decodes
    greedily.  ``T_out`` defaults to the source width ``T``.
    """
    check_choice("attention", attention, ATTENTION)
    H, V = _sizes(params)
    B, T = src.shape
    T_out = T if T_out is None else T_out
    bos = V  # the extra row of tgt_embed
    enc_layer = bidirectional(cells.gru(H))
    dec = cells.gru(H)
    hs, finals = enc_layer.apply(params["encoder"], params["src_embed"][src], lengths=lengths)
    s0 = jnp.tanh(_common.dense(params["init"],
                                jnp.concatenate([finals["fwd"].h, finals["bwd"].h], -1)))
    mask = jnp.arange(T)[None, :] < lengths[:, None]  # (B, T)
    att = params["att"]
    keys = hs @ (att["U_h"] if attention == "additive" else att["W_k"]).T  # (B, T, H)
    w_dec = dec.prepare(params["decoder"])

    def one(h_enc, k_enc, m, s, forced):
        """Decoder for one example: h_enc (T, 2H), k_enc (T, H), m (T,), s (H,)."""
        def body(carry, inp):
            s, prev = carry
            if attention == "additive":
                e = jnp.tanh(att["W_s"] @ s + k_enc) @ att["v"]
            else:
                e = k_enc @ s / math.sqrt(H)
            a = jax.nn.softmax(jnp.where(m, e, -jnp.inf))
            a = jnp.where(m, a, 0.0)
            c = a @ h_enc
            _, s_new = dec.step(w_dec, HiddenState(s),
                                    jnp.concatenate([params["tgt_embed"][prev], c]))
            lg = _common.dense(params["out"], jnp.concatenate([s_new, c]))
            nxt = jnp.argmax(lg).astype(jnp.int32) if forced is None else inp
            return (s_new, nxt), (lg, a)

        xs = None if forced is None else forced
        _, (lg, a) = jax.lax.scan(body, (s, jnp.int32(bos)), xs, length=T_out)
        return lg, a

    if teacher is None:
        return jax.vmap(lambda h, k, m, s: one(h, k, m, s, None))(hs, keys, mask, s0)
    return jax.vmap(one)(hs, keys, mask, s0, teacher.astype(jnp.int32))


def loss_fn(params, batch, attention="additive"):
    """Masked mean cross-entropy under teacher forcing."""
    src, tgt, lengths = batch
    lg, _ = decode(params, src, lengths, tgt, attention=attention)
    lp = jnp.take_along_axis(jax.nn.log_softmax(lg), tgt[..., None], -1)[..., 0]
    mask = jnp.arange(src.shape[1])[None, :] < lengths[:, None]
    return -jnp.sum(lp * mask) / jnp.sum(mask)


def train(task="reverse", *, attention="additive", hidden=64, embed=32, min_len=3,
          max_len=8, n_symbols=10, steps=500, batch=64, lr=3e-3, seed=0, log_every=0,
          print_fn=print):
    """Train on freshly drawn batches; return ``(params, losses)``."""
    check_choice("task", task, TASKS)
    check_positive_int("min_len", min_len)
    if max_len < min_len:
        raise ValueError(f"max_len must be >= min_len ({min_len}), got {max_len}")
    params = init(jax.random.key(seed), n_symbols, hidden, embed, attention)
    return fit(lambda p, b: loss_fn(p, b, attention), params,
                       lambda k: make_batch(k, task, batch, min_len, max_len, n_symbols),
                       steps=steps, lr=lr, key=jax.random.key(seed + 1),
                       log_every=log_every, print_fn=print_fn, name="cross-entropy")


def evaluate(params, task, lengths, *, attention="additive", n=256, seed=123):
    """Greedy-decoding accuracy per length: ``{L: (token accuracy, sequence accuracy)}``."""
    H, V = _sizes(params)
    lengths = [int(L) for L in lengths]
    T = max(lengths)  # one padded width: one compilation for every length
    res = {}
    for i, L in enumerate(lengths):
        src, tgt, lens = make_batch(jax.random.key(seed + i), task, n, L, L, V, T=T)
        lg, _ = decode(params, src, lens, attention=attention)
        hit = (jnp.argmax(lg, -1) == tgt)[:, :L]
        res[L] = (float(jnp.mean(hit)), float(jnp.mean(jnp.all(hit, -1))))
    return res


def _plots(out, params, task, attention, acc, train_range, seed):
    H, V = _sizes(params)
    L = train_range[1]
    src, tgt, lens = make_batch(jax.random.key(seed + 999), task, 1, L, L, V)
    lg, a = decode(params, src, lens, attention=attention)
    pred = np.asarray(jnp.argmax(lg, -1))[0]
    fig = figures.figure(figsize=(10, 4), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2)
    im = ax1.imshow(np.asarray(a[0]), cmap="viridis", vmin=0, vmax=1)
    ax1.set_xticks(range(L), [str(int(v)) for v in np.asarray(src[0])])
    ax1.set_yticks(range(L), [str(int(v)) for v in pred])
    ax1.set(xlabel="source token", ylabel="decoded token",
            title=f"{attention} attention, {task}")
    fig.colorbar(im, ax=ax1, fraction=0.046)
    Ls = sorted(acc)
    ax2.plot(Ls, [acc[l][0] for l in Ls], "o-", label="token accuracy")
    ax2.plot(Ls, [acc[l][1] for l in Ls], "s--", label="sequence accuracy")
    ax2.axvspan(train_range[0] - 0.5, train_range[1] + 0.5, color="0.9", label="trained")
    ax2.set(xlabel="sequence length", ylabel="accuracy (greedy)", ylim=(0, 1.02),
            title="accuracy against length")
    ax2.legend(fontsize=8)
    figures.save(fig, os.path.join(out, "seq2seq.png"))
    return [int(v) for v in np.asarray(src[0])], [int(v) for v in pred]


@writes_out
def run_seq2seq(out, *, task="reverse", attention="additive", hidden=64, embed=32,
                min_len=3, max_len=8, eval_max_len=None, steps=500, batch=64, lr=3e-3,
                seed=0, print_fn=print):
    """The ``rnnjax seq2seq`` pipeline: train, evaluate greedy decoding on lengths
    ``1 .. eval_max_len`` (default ``max_len + 4``), and write ``seq2seq.png`` (an
    attention heatmap and accuracy against length), ``seq2seq.csv`` and
    ``seq2seq.json``."""
    _common.check_fit(steps=steps, batch=batch, lr=lr)
    out = _common.out_dir(out)
    eval_max_len = max_len + 4 if eval_max_len is None else eval_max_len
    check_positive_int("eval_max_len", eval_max_len)
    params, losses = train(task, attention=attention, hidden=hidden, embed=embed,
                           min_len=min_len, max_len=max_len, steps=steps, batch=batch,
                           lr=lr, seed=seed)
    acc = evaluate(params, task, range(1, eval_max_len + 1), attention=attention)
    example = _plots(out, params, task, attention, acc, (min_len, max_len), seed)
    with atomic_open(os.path.join(out, "seq2seq.csv"), "w") as f:
        f.write("length,token_accuracy,sequence_accuracy,trained\n")
        for L, (ta, sa) in acc.items():
            f.write(f"{L},{ta:.4f},{sa:.4f},{int(min_len <= L <= max_len)}\n")
    inside = [acc[L][0] for L in acc if min_len <= L <= max_len]
    summary = {"task": task, "attention": attention, "hidden": hidden, "steps": steps,
               "train_lengths": [min_len, max_len], "final_loss": losses[-1],
               "token_accuracy_trained_lengths": float(np.mean(inside)),
               "accuracy": {str(k): {"token": v[0], "sequence": v[1]} for k, v in acc.items()},
               "example": {"source": example[0], "decoded": example[1]}}
    _common.write_json(os.path.join(out, "seq2seq.json"), summary)
    print_fn(f"{task} with {attention} attention, trained on lengths {min_len}-{max_len}:")
    for L, (ta, sa) in acc.items():
        print_fn(f"  length {L:3d}  token accuracy {ta:.3f}  sequence accuracy {sa:.3f}"
                 f"{'' if min_len <= L <= max_len else '  (not trained)'}")
    print_fn(f"example: {example[0]} -> {example[1]}")
    print_fn(f"wrote {os.path.join(out, 'seq2seq.png')}")
    return summary


__all__ = ["ATTENTION", "TASKS", "decode", "evaluate", "init", "loss_fn", "make_batch",
           "run_seq2seq", "train"]
