r"""Character-level language modelling over any UTF-8 text file.

The vocabulary is the sorted set of characters in the file.  :func:`charlm_task` follows
the PTB protocol (:mod:`rnnjax.tasks.stateful`): the text is cut into contiguous train /
valid / test parts (the last 5% and 5% by default) and the task carries a
:class:`~rnnjax.tasks.stateful.Stream`, so the training runner trains it statefully
(consecutive windows of ``B`` streams, the carry passed on, gradients cut at window
boundaries) and evaluates the whole valid and test parts with carried state.  Without a
file it reads the shipped public-domain text :data:`DEFAULT_TEXT` (200,376 characters of
Shakespeare's plays; see ``rnnjax/data/SOURCES.md``).  ``task.fingerprint`` is the
SHA-256 of the file's bytes (a resumed run must train on the same text).

``task.sample`` still draws ``batch`` windows of ``seq_len + 1`` characters of the
training part at uniform positions (``eval_sample``: of the valid part): inputs are the
first ``seq_len``, targets the next character at each step.  Loss: mean cross-entropy in
nats; the metric ``bpc = loss / ln 2`` (bits per character).  Baseline: the unigram
entropy of the training text (a model with no context).  :func:`sample` draws text after
a prompt: each next character is ``argmax(logits)`` when ``temperature == 0`` and is
drawn from ``softmax(logits / temperature)`` otherwise, with one PRNG key per step split
from ``key``; as ``temperature -> 0`` the draw tends to greedy decoding.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_positive_int
from rnnjax.tasks.base import Task, accuracy, cross_entropy, one_hot_encoder
from rnnjax.tasks.stateful import Stream, split_contiguous

DEFAULT_TEXT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            "data", "shakespeare.txt")


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


def text_path(path) -> str:
    """``path``, or the shipped :data:`DEFAULT_TEXT` when it is None."""
    return DEFAULT_TEXT if path is None else os.fspath(path)


def file_sha256(path) -> str:
    """The SHA-256 (hex) of the bytes of the file ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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


def charlm_task(path=None, seq_len: int = 100, valid: float = 0.05,
                test: float = 0.05) -> Task:
    """Character LM as a stateful :class:`Task` (see the module docstring) over the text
    file ``path`` (the shipped :data:`DEFAULT_TEXT` when None), windows of ``seq_len``;
    ``task.vocab`` is reachable as ``vocab_of(task)``."""
    check_positive_int("seq_len", seq_len)
    path = text_path(path)
    text = load_text(path)
    vocab = Vocab(sorted(set(text)))
    ids = vocab.encode(text)
    train_ids, valid_ids, test_ids = split_contiguous(ids, valid, test)
    for name, part in (("train", train_ids), ("valid", valid_ids)):
        if len(part) < seq_len + 1:
            raise ValueError(f"the {name} part of the text {path!r} has {len(part)} "
                             f"characters; T={seq_len} needs at least {seq_len + 1}: "
                             f"lower T or give a longer text")
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

    task = Task(name="charlm", sample=sampler(train_ids), eval_sample=sampler(valid_ids),
                encode=one_hot_encoder(len(vocab)), loss=loss, metrics=metrics,
                input_size=len(vocab), output_size=len(vocab), readout="all",
                baseline=unigram, baseline_note="unigram entropy of the training text",
                time=seq_len,
                stream=Stream(train_ids, valid_ids, test_ids, seq_len, len(vocab)),
                fingerprint=file_sha256(path))
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
    runner's ``rnnjax.layers.readout.Model``).
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


__all__ = ["DEFAULT_TEXT", "Vocab", "charlm_task", "file_sha256", "load_text", "sample",
           "split_text", "text_path", "vocab_of"]
