r"""Character-level language modelling over any UTF-8 text file.

The vocabulary is the sorted set of characters in the file; the last 10% of the text is
held out.  A batch is ``batch`` windows of ``seq_len + 1`` characters at uniform
positions: inputs are the first ``seq_len``, targets the next character at each step.
Loss: mean cross-entropy in nats; the metric ``bpc = loss / ln 2`` (bits per
character).  Baseline: the unigram entropy of the training text (a model with no
context).  :func:`generate` samples text with a temperature.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.checks import check_positive_int
from rnnjax.tasks.base import Task, accuracy, cross_entropy, one_hot_encoder


class Vocab:
    """Characters <-> integer ids."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[c] for c in text], np.int32)

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in ids)

    def __len__(self):
        return len(self.chars)


def load_text(path) -> str:
    if path is None:
        raise FileNotFoundError("the charlm task needs --data PATH: a UTF-8 text file")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"text file not found at {os.fspath(path)!r}: expected a "
                                f"UTF-8 text file")
    with open(path, encoding="utf-8") as f:
        return f.read()


def charlm_task(path, seq_len: int = 100, holdout: float = 0.1) -> Task:
    """Character LM as a :class:`Task`; ``task.vocab`` is reachable as ``vocab_of(task)``."""
    check_positive_int("seq_len", seq_len)
    text = load_text(path)
    vocab = Vocab(sorted(set(text)))
    ids = vocab.encode(text)
    n_eval = int(len(ids) * holdout)
    train_ids, eval_ids = ids[:len(ids) - n_eval], ids[len(ids) - n_eval:]
    for name, part in (("training", train_ids), ("held-out", eval_ids)):
        if len(part) < seq_len + 1:
            raise ValueError(f"the {name} part of {path!r} has {len(part)} characters; "
                             f"seq_len={seq_len} needs at least {seq_len + 1}")
    counts = np.bincount(train_ids, minlength=len(vocab)).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    unigram = float(-(p * np.log(p)).sum())

    def sampler(arr):
        arr = jnp.asarray(arr)

        def sample(key, batch):
            start = jax.random.randint(key, (batch,), 0, arr.shape[0] - seq_len)
            win = jax.vmap(lambda s: jax.lax.dynamic_slice(arr, (s,), (seq_len + 1,)))(start)
            return win[:, :-1], win[:, 1:]
        return sample

    def loss(logits, ys):
        return jnp.mean(cross_entropy(logits, ys))

    def metrics(logits, ys):
        l = loss(logits, ys)
        return {"loss": l, "bpc": l / math.log(2), "accuracy": accuracy(logits, ys)}

    task = Task(name="charlm", sample=sampler(train_ids), eval_sample=sampler(eval_ids),
                encode=one_hot_encoder(len(vocab)), loss=loss, metrics=metrics,
                input_size=len(vocab), output_size=len(vocab), readout="all",
                baseline=unigram, baseline_note="unigram entropy of the training text",
                time=seq_len)
    _VOCABS[id(task.encode)] = vocab
    return task


_VOCABS: dict = {}


def vocab_of(task: Task) -> Vocab:
    """The :class:`Vocab` of a task built by :func:`charlm_task`."""
    return _VOCABS[id(task.encode)]


def generate(model, params, vocab: Vocab, prompt: str, length: int, *, key,
             temperature: float = 1.0) -> str:
    """Sample ``length`` characters after ``prompt`` from a trained model.

    Each next character is drawn from ``softmax(logits / temperature)``; ``temperature``
    -> 0 approaches greedy decoding.  ``model`` is a :class:`rnnjax.models.Model`.
    """
    if not prompt:
        raise ValueError("prompt must hold at least one character")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    xs = one_hot_encoder(len(vocab))(jnp.asarray(vocab.encode(prompt)))
    carry, logits = model.scan_prefix(params, xs)
    out = []
    step = jax.jit(model.step_logits)
    for k in jax.random.split(key, length):
        c = jax.random.categorical(k, logits / temperature)
        out.append(int(c))
        carry, logits = step(params, carry, jax.nn.one_hot(c, len(vocab), dtype=jnp.float32))
    return vocab.decode(out)
