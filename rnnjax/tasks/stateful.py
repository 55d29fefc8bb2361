r"""Character-level language modelling as the PTB protocol: stateful truncated BPTT.

The recipe of Zaremba, Sutskever & Vinyals (2014) and the PTB character tables
(Graves 2013; Krueger et al. 2017 "Zoneout"; Merity et al. 2018 AWD-LSTM):

* the text is cut into **contiguous** train / valid / test parts (:func:`split_contiguous`;
  the last ``valid + test`` fractions, in that order);
* a part of ``N`` characters is laid out as ``B`` streams (:func:`batchify`):
  ``streams[b] = ids[b M : (b+1) M]`` with ``M = floor(N / B)``, the remainder dropped;
* window ``k`` (:func:`window`) holds inputs ``streams[:, kL : kL+L]`` and targets
  ``streams[:, kL+1 : kL+L+1]`` (``L`` the window length, ``K = floor((M-1)/L)``
  windows);
* training runs the windows in order; the carry leaving window ``k`` enters window
  ``k+1`` (``h_0^{(k+1)} = h_L^{(k)}``), and ``stop_gradient`` cuts the gradient at
  every window boundary (:func:`window_loss`);
* evaluation (:func:`evaluate_bpc`) runs the whole part with carried state, window by
  window, and reports ``bpc = (1/n) sum_t -log_2 p(x_{t+1} | x_{\le t})`` over all
  ``n`` predicted characters.

The model is a cell with a linear readout, params ``{"cell", "readout": {"W", "b"}}`` as
:func:`rnnjax.layers.readout.cell_with_readout` builds them.

The training runner (``rnnjax train --task charlm``, :mod:`rnnjax.training.runner`) runs the same
protocol through its one update rule: a task that carries a :class:`Stream` is stateful;
step ``i`` trains on window ``k = i mod K`` (:func:`window_at`, full windows only, so
``K = floor((M - 1) / L)`` per epoch, :func:`windows_per_epoch`) from the carry that
window ``k - 1`` left (zeros at ``k = 0``), and the records report
:func:`text_metrics` over the whole valid and test parts.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.core.checks import check_fraction, check_positive_int
from rnnjax.engine.sequence import run
from rnnjax.tasks.base import cross_entropy


def split_contiguous(ids, valid: float = 0.05, test: float = 0.05):
    """``(train, valid, test)`` contiguous parts of ``ids`` (the last fractions)."""
    check_fraction("valid", valid)
    check_fraction("test", test)
    n = len(ids)
    n_test, n_valid = int(n * test), int(n * valid)
    parts = (ids[:n - n_valid - n_test], ids[n - n_valid - n_test:n - n_test], ids[n - n_test:])
    for name, part in zip(("train", "valid", "test"), parts):
        if len(part) < 2:
            raise ValueError(f"the {name} part of the text has {len(part)} characters; "
                             f"at least 2 are needed (one input and its target)")
    return parts


def batchify(ids, streams: int) -> np.ndarray:
    """``(streams, floor(N / streams))``: stream ``b`` is the ``b``-th contiguous chunk."""
    check_positive_int("streams", streams)
    m = len(ids) // streams
    if m < 2:
        raise ValueError(f"{len(ids)} characters cannot make {streams} streams of at least "
                         f"2 characters")
    return np.asarray(ids[:m * streams]).reshape(streams, m)


def n_windows(streams: np.ndarray, length: int) -> int:
    """``ceil((M - 1) / L)`` windows (the last one may be shorter)."""
    return -(-(streams.shape[1] - 1) // length)


def window(streams, k: int, length: int):
    """Inputs and targets ``(B, <= L)`` of window ``k``."""
    x = streams[:, k * length:(k + 1) * length]
    y = streams[:, k * length + 1:(k + 1) * length + 1]
    return x[:, :y.shape[1]], y


class Stream(NamedTuple):
    """The stateful protocol of a task (``Task.stream``): the contiguous ``train``,
    ``valid`` and ``test`` parts of the text (int32 token ids), the window length
    ``length`` (``L``) and the vocabulary size ``vocab``."""

    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    length: int
    vocab: int


def windows_per_epoch(n: int, streams: int, length: int) -> int:
    """``K = floor((M - 1) / L)`` full windows of ``L`` inputs (and their ``L`` targets)
    in ``streams`` streams of ``M = floor(n / streams)`` characters; a ``ValueError``
    naming the sizes when there is none."""
    check_positive_int("streams", streams)
    check_positive_int("length", length)
    m = n // streams
    k = (m - 1) // length if m > 0 else 0
    if k < 1:
        raise ValueError(f"the training text of {n} characters in batch={streams} streams "
                         f"({m} characters each) holds no window of length T={length} "
                         f"(each stream needs at least {length + 1} characters): lower "
                         f"the batch or T, or give a longer text")
    return k


def window_at(streams, k, length: int):
    """Inputs and targets ``(B, L)`` of full window ``k`` of ``streams (B, M)``:
    ``streams[:, kL : kL+L]`` and ``streams[:, kL+1 : kL+L+1]``; ``k`` may be traced
    (``0 <= k < K``, :func:`windows_per_epoch`)."""
    b = streams.shape[0]
    start = jnp.asarray(k) * length
    zero = jnp.zeros_like(start)  # the same integer type (x64 or not)
    x = jax.lax.dynamic_slice(streams, (zero, start), (b, length))
    y = jax.lax.dynamic_slice(streams, (zero, start + 1), (b, length))
    return x, y


def _logits(cell, params, carry, x_ids, vocab, grad="auto"):
    xs = jax.nn.one_hot(x_ids, vocab, dtype=params["readout"]["W"].dtype)
    hs, carry = run(cell, params["cell"], xs, carry=carry, grad=grad)
    return hs @ params["readout"]["W"].T + params["readout"]["b"], carry


def window_loss(cell, params, carry, x_ids, y_ids, vocab, grad="auto"):
    """``(mean cross-entropy (nats), carry out)`` of one window, starting from
    ``stop_gradient(carry)``: no gradient reaches the previous window."""
    logits, carry = _logits(cell, params, jax.lax.stop_gradient(carry), x_ids, vocab, grad)
    return jnp.mean(cross_entropy(logits, y_ids)), carry


def text_metrics(cell, params, ids, length: int, vocab: int) -> dict:
    r"""``{"loss", "bpc"}`` of the whole text ``ids`` read end to end from a zero carry,
    the carry passed across windows of ``length`` (bounded memory): ``loss = (1/n)
    \sum_t -\ln p(x_{t+1} | x_{\le t})`` over the ``n = len(ids) - 1`` predictions and
    ``bpc = loss / ln 2``.  Traceable (the runner jits and vmaps it); the same number as
    :func:`evaluate_bpc` with one stream and as one long ``rnnjax.run``."""
    ids = jnp.asarray(ids)
    n = ids.shape[0] - 1
    k = -(-n // length)
    pad = k * length - n  # padded positions come after every real one: masked out
    x = jnp.concatenate([ids[:-1], jnp.zeros((pad,), ids.dtype)]).reshape(k, 1, length)
    y = jnp.concatenate([ids[1:], jnp.zeros((pad,), ids.dtype)]).reshape(k, 1, length)
    mask = (jnp.arange(k * length) < n).reshape(k, 1, length)

    def body(carry, xym):
        xk, yk, mk = xym
        logits, carry = _logits(cell, params, carry, xk, vocab)
        return carry, jnp.sum(jnp.where(mk, cross_entropy(logits, yk), 0.0))

    carry0 = cell.initial_carry((1,), params["readout"]["W"].dtype)
    _, sums = jax.lax.scan(body, carry0, (x, y, mask))
    loss = jnp.sum(sums) / n
    return {"loss": loss, "bpc": loss / math.log(2)}


def evaluate_bpc(cell, params, ids, length: int, vocab: int, streams: int = 1) -> float:
    """Bits per character of the whole text ``ids`` with carried state, window by
    window (``streams`` chunks as in :func:`batchify`; 1 reads the text end to end)."""
    s = batchify(ids, streams)
    f = jax.jit(lambda p, c, x, y: _window_sum(cell, p, c, x, y, vocab))
    carry = cell.initial_carry((s.shape[0],), params["readout"]["W"].dtype)
    total, count = 0.0, 0
    for k in range(n_windows(s, length)):
        x, y = window(s, k, length)
        nll, carry = f(params, carry, jnp.asarray(x), jnp.asarray(y))
        total, count = total + float(nll), count + y.size
    return total / count / math.log(2)


def _window_sum(cell, params, carry, x, y, vocab):
    logits, carry = _logits(cell, params, carry, x, vocab)
    return jnp.sum(cross_entropy(logits, y)), carry


__all__ = ["Stream", "batchify", "evaluate_bpc", "n_windows", "split_contiguous",
           "text_metrics", "window", "window_at", "window_loss",
           "windows_per_epoch"]
