r"""Character-level language modelling over any UTF-8 text file.

The vocabulary is the sorted set of characters in the file; the last 10% of the text is
held out.  A batch is ``batch`` windows of ``seq_len + 1`` characters at uniform
positions: inputs are the first ``seq_len``, targets the next character at each step.
Loss: mean cross-entropy in nats; the metric ``bpc = loss / ln 2`` (bits per
character).  Baseline: the unigram entropy of the training text (a model with no
context).  :func:`sample` draws text after a prompt: each next character is ``argmax(logits)``
when ``temperature == 0`` and is drawn from ``softmax(logits / temperature)``
otherwise, with one PRNG key per step split from ``key``; as ``temperature -> 0`` the
draw tends to greedy decoding.
"""

from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

import functools

from rnnjax.checks import check_positive_int
from rnnjax.tasks.base import Task, accuracy, cross_entropy, one_hot_encoder


class Vocab:
    """Characters <-> integer ids (the sorted set of characters of a text)."""

    def __init__(self, chars):
        self.chars = list(chars)
        self.index = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def of(cls, text):
        return cls(sorted(set(text)))

    def encode(self, text: str) -> np.ndarray:
        missing = sorted(set(text) - set(self.index))
        if missing:
            raise ValueError(f"text holds characters outside the vocabulary: {missing}")
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
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise ValueError(f"text file {os.fspath(path)!r} is not UTF-8 text ({e})") from None
    if len(set(text)) < 2:
        raise ValueError(f"text file {os.fspath(path)!r} must hold at least two distinct "
                         f"characters")
    return text


def split_text(ids, holdout: float, seq_len: int):
    """Split token ids into training text and the last ``holdout`` fraction, each long
    enough for one window of ``seq_len + 1`` characters."""
    n_eval = int(len(ids) * holdout)
    train_ids, eval_ids = ids[:len(ids) - n_eval], ids[len(ids) - n_eval:]
    for name, part in (("training", train_ids), ("held-out", eval_ids)):
        if len(part) < seq_len + 1:
            raise ValueError(f"the {name} part of the text has {len(part)} characters; "
                             f"seq_len={seq_len} needs at least {seq_len + 1}")
    return train_ids, eval_ids


def charlm_task(path, seq_len: int = 100, holdout: float = 0.1) -> Task:
    """Character LM as a :class:`Task`; ``task.vocab`` is reachable as ``vocab_of(task)``."""
    check_positive_int("seq_len", seq_len)
    text = load_text(path)
    vocab = Vocab(sorted(set(text)))
    ids = vocab.encode(text)
    train_ids, eval_ids = split_text(ids, holdout, seq_len)
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


def sample(model, params, vocab: Vocab, prompt: str, length: int, *, key=None,
           temperature: float = 1.0) -> str:
    """``length`` characters after ``prompt`` (see the module docstring).

    ``temperature == 0`` is greedy argmax decoding and needs no ``key``.  ``model`` is
    anything with ``scan_prefix`` and ``step_logits`` (a :class:`CharModel` or the
    runner's ``rnnjax.models.Model``).
    """
    if not prompt:
        raise ValueError("prompt must hold at least one character")
    check_positive_int("length", length)
    if not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if temperature > 0 and key is None:
        raise ValueError("key must be given when temperature > 0 (sampling is random)")
    return vocab.decode(_sample_ids(model, params, jnp.asarray(vocab.encode(prompt)),
                                    len(vocab), length,
                                    key if key is not None else jax.random.key(0),
                                    float(temperature)))


def _sample_ids(model, params, prompt_ids, V, length, key, temperature):
    return np.asarray(_sampler(model, V, length, temperature)(params, prompt_ids, key))


@functools.lru_cache(maxsize=32)
def _sampler(model, V, length, temperature):
    """The jitted sampling program, built once per (model, vocabulary size, length,
    temperature)."""
    @jax.jit
    def go(params, prompt_ids, key):
        carry, logits = model.scan_prefix(params, jax.nn.one_hot(prompt_ids, V,
                                                                  dtype=jnp.float32))

        def body(c, k):
            carry, logits = c
            if temperature == 0:
                nxt = jnp.argmax(logits)
            else:
                nxt = jax.random.categorical(k, logits / temperature)
            carry, logits = model.step_logits(params, carry,
                                              jax.nn.one_hot(nxt, V, dtype=jnp.float32))
            return (carry, logits), nxt

        _, ids = jax.lax.scan(body, (carry, logits), jax.random.split(key, length))
        return ids

    return go


__all__ = ["Vocab", "charlm_task", "load_text", "sample", "split_text", "vocab_of"]
