r"""Many-to-one sequence classification (e.g. sentiment of short sentences).

Model, for a token sequence ``w_1 .. w_L`` padded to ``T`` (pad id 0, unknown id 1)::

    e_t = E[w_t]                                   embedding, (T, D)
    h_t = cell(h_{t-1}, e_t)       t = 1 .. L      rnnjax.run with lengths=L
    z   = h_L                                      unidirectional, or
    z   = [h_L^fwd, h_1^bwd]                       bidirectional (the backward cell reads
                                                   w_L .. w_1 within the length)
    p(y | w) = softmax(W z + b)

Masking: the engine freezes the carry once ``t >= L`` (``lengths``), so the padding never
reaches ``z``: padded and unpadded inputs give the same logits.  The loss is the mean
cross-entropy; the baseline is the majority class of the training split.

Data file: one example per line, ``label<TAB>text``; tokens are lower-cased runs of
letters, digits and apostrophes (punctuation marks are tokens of their own).  A tiny
example ships as ``rnnjax/data/sentiment.tsv``.
"""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import cells
from rnnjax.apps import _common
from rnnjax.core.checks import check_file, check_fraction, check_positive_int
from rnnjax.io.outputs import atomic_open, writes_out
from rnnjax.layers import bidirectional, unidirectional
from rnnjax.plots import figures
from rnnjax.training.update import fit

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "sentiment.tsv")
PAD, UNK = 0, 1
_TOKEN = re.compile(r"[\w']+|[^\w\s]")


def tokenize(text: str):
    return _TOKEN.findall(text.lower())


def read_labelled(path):
    """``(texts, labels)`` from a ``label<TAB>text`` file (blank lines skipped)."""
    check_file("data", path)
    texts, labels = [], []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(f"{path}, line {n}: expected 'label<TAB>text', got {line!r}")
            label, text = line.rstrip("\n").split("\t", 1)
            texts.append(text)
            labels.append(label.strip())
    if len(set(labels)) < 2:
        raise ValueError(f"data must hold at least two classes, got {sorted(set(labels))}")
    return texts, labels


def build_vocab(texts, min_count: int = 1):
    """Token -> id, ids from 2 (0 is padding, 1 unknown), most frequent first."""
    counts = {}
    for t in texts:
        for w in tokenize(t):
            counts[w] = counts.get(w, 0) + 1
    words = sorted((w for w, c in counts.items() if c >= min_count),
                   key=lambda w: (-counts[w], w))
    return {w: i + 2 for i, w in enumerate(words)}


def encode(texts, vocab, max_len=None):
    """``(ids (N, T) int32, lengths (N,) int32)``, right-padded with 0."""
    seqs = [[vocab.get(w, UNK) for w in tokenize(t)] for t in texts]
    T = max(max((len(s) for s in seqs), default=1), 1) if max_len is None else max_len
    ids = np.zeros((len(seqs), T), np.int32)
    lengths = np.zeros(len(seqs), np.int32)
    for i, s in enumerate(seqs):
        s = s[:T]
        ids[i, :len(s)] = s
        lengths[i] = len(s)
    return ids, lengths


def make_model(cell_name="gru", hidden=32, bidirectional_=False):
    """The recurrent layer: unidirectional or bidirectional ``cell_name`` cells."""
    cell = cells.make(cell_name, hidden)
    return bidirectional(cell) if bidirectional_ else unidirectional(cell)


def init(key, layer, vocab_size: int, n_classes: int, embed: int = 32):
    k1, k2, k3 = jax.random.split(key, 3)
    return {"embed": 0.1 * jax.random.normal(k1, (vocab_size, embed), jnp.float32),
            "rnn": layer.init(k2, embed),
            "out": _common.dense_init(k3, layer.output_size, n_classes)}


def logits(layer, params, ids, lengths):
    """Class logits ``(N, C)`` for token ids ``(N, T)`` with ``lengths (N,)``."""
    xs = params["embed"][ids]
    _, carry = layer.apply(params["rnn"], xs, lengths=lengths)
    if isinstance(carry, dict):  # bidirectional: final states of both directions
        z = jnp.concatenate([carry["fwd"].h, carry["bwd"].h], -1)
    else:
        z = carry.h
    return _common.dense(params["out"], z)


def accuracy(layer, params, ids, lengths, y):
    return float(jnp.mean(jnp.argmax(logits(layer, params, ids, lengths), -1) == y))


def train(layer, params, ids, lengths, y, *, steps=300, batch=32, lr=3e-3, seed=0):
    """Adam on the mean cross-entropy; returns ``(params, losses)``."""
    ids, lengths, y = jnp.asarray(ids), jnp.asarray(lengths), jnp.asarray(y)
    batch_fn = _common.random_rows(ids, lengths, y, batch=batch)

    def loss(p, b):
        lg = jax.nn.log_softmax(logits(layer, p, b[0], b[1]))
        return -jnp.mean(jnp.take_along_axis(lg, b[2][:, None], -1))

    return fit(loss, params, batch_fn, steps=steps, lr=lr, key=jax.random.key(seed))


@writes_out(reads=("data",))
def run_classify(out, *, data=DATA, cell_name="gru", hidden=32, embed=32,
                 bidirectional_=False, steps=300, batch=32, lr=3e-3, test_fraction=0.25,
                 seed=0, print_fn=print):
    """The ``rnnjax classify`` pipeline.  Writes ``classify.png`` (training loss and
    accuracies), ``classify.md`` (accuracies and the test predictions) and
    ``classify.json``; returns the summary dict."""
    check_positive_int("steps", steps)
    check_fraction("test_fraction", test_fraction)
    _common.check_fit(steps=steps, batch=batch, lr=lr)
    out = _common.out_dir(out)
    texts, labels = read_labelled(data)
    classes = sorted(set(labels))
    y_all = np.asarray([classes.index(l) for l in labels], np.int32)
    order = np.random.default_rng(seed).permutation(len(texts))
    n_test = max(1, int(round(len(texts) * test_fraction)))
    te, tr = order[:n_test], order[n_test:]
    vocab = build_vocab([texts[i] for i in tr])
    ids, lengths = encode(texts, vocab)
    layer = make_model(cell_name, hidden, bidirectional_)
    params = init(jax.random.key(seed), layer, len(vocab) + 2, len(classes), embed)
    params, losses = train(layer, params, ids[tr], lengths[tr], y_all[tr], steps=steps,
                           batch=batch, lr=lr, seed=seed)
    majority = int(np.bincount(y_all[tr], minlength=len(classes)).argmax())
    acc = {"train": accuracy(layer, params, ids[tr], lengths[tr], y_all[tr]),
           "test": accuracy(layer, params, ids[te], lengths[te], y_all[te]),
           "majority class (test)": float(np.mean(y_all[te] == majority))}
    pred = np.asarray(jnp.argmax(logits(layer, params, ids[te], lengths[te]), -1))
    name = f"{'bi' if bidirectional_ else ''}{cell_name}"

    lines = [f"# Sequence classification: {name}, {len(tr)} train / {len(te)} test", "",
             "| split | accuracy |", "|---|---|"]
    lines += [f"| {k} | {v:.3f} |" for k, v in acc.items()]
    lines += ["", "| text | label | predicted |", "|---|---|---|"]
    lines += [f"| {texts[i]} | {labels[i]} | {classes[p]} |" for i, p in zip(te, pred)]
    md = os.path.join(out, "classify.md")
    with atomic_open(md, "w") as f:
        f.write("\n".join(lines) + "\n")
    fig = figures.figure(figsize=(9, 3))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(losses)
    ax1.set(xlabel="step", ylabel="cross-entropy", title="training loss")
    ax2.barh(list(acc), list(acc.values()), color=["C0", "C2", "C7"])
    ax2.set(xlim=(0, 1), xlabel="accuracy", title=f"{name} on {os.path.basename(data)}")
    png = os.path.join(out, "classify.png")
    figures.save(fig, png)
    summary = {"data": os.fspath(data), "classes": classes, "cell": cell_name,
               "bidirectional": bidirectional_, "hidden": hidden, "steps": steps,
               "vocab": len(vocab), "train": len(tr), "test": len(te), "accuracy": acc,
               "final_loss": losses[-1]}
    _common.write_json(os.path.join(out, "classify.json"), summary)
    print_fn("\n".join(lines[2:4 + len(acc)]))
    print_fn(f"wrote {png} and {md}")
    return summary


__all__ = ["DATA", "accuracy", "build_vocab", "encode", "init", "logits", "make_model",
           "read_labelled", "run_classify", "tokenize", "train"]
