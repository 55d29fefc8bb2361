"""The memory lab's token tasks: each task's targets equal an independent NumPy
computation from its inputs, its baseline is the loss of the stated memoryless strategy,
and a task built at ``4T`` draws sequences of ``4T`` steps."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import tasks
from rnnjax.tasks.masked import masked_loss

B = 24


def _selective_copy(xs, ys, vocab=8, n=4):
    T = xs.shape[1]
    assert (xs[:, T - n:] == vocab + 1).all()
    region = xs[:, :T - n]
    assert ((region != 0).sum(1) == n).all()
    want = np.full_like(ys, -1)
    for b in range(len(xs)):
        want[b, T - n:] = region[b][region[b] != 0]  # the data tokens in order
    return want


def _mqar(xs, ys, vocab=32, P=4):
    want = np.full_like(ys, -1)
    for b in range(len(xs)):
        keys, values = xs[b, 0:2 * P:2], xs[b, 1:2 * P:2]
        assert len(set(keys)) == P and (keys >= 1).all() and (keys < vocab // 2).all()
        assert (values >= vocab // 2).all() and len(set(values)) == P
        table = dict(zip(keys, values))
        labelled = np.flatnonzero(ys[b] >= 0)
        assert len(labelled) == P and ((labelled - 2 * P) % 2 == 0).all()
        assert sorted(xs[b, labelled]) == sorted(keys)  # each key queried once
        for t in labelled:
            want[b, t] = table[xs[b, t]]
    return want


def _induction(xs, ys, vocab=8):
    want = np.full_like(ys, -1)
    for b in range(len(xs)):
        trig = np.flatnonzero(xs[b] == vocab)
        assert len(trig) == 2 and trig[1] == xs.shape[1] - 1
        want[b, -1] = xs[b, trig[0] + 1]
    return want


def _running(xs, ys, step, start):
    want = np.full_like(ys, -1)
    for b in range(len(xs)):
        s = start(xs[b, 0])
        for t in range(1, xs.shape[1]):
            s = step(s, xs[b, t])
            want[b, t] = s
    return want


PERMS = {n: list(itertools.permutations(range(n))) for n in (3, 5)}


def _perm(n):
    P = PERMS[n]
    return lambda s, x: P.index(tuple(P[x][P[s][i]] for i in range(n)))


def _cycle_step(s, x):
    return (s + {5: 0, 6: 1, 7: -1}[int(x)]) % 5


CASES = {  # task: (T, NumPy targets, the classes a memoryless model guesses among)
    "selective_copy": (12, _selective_copy, range(1, 9)),
    "mqar": (16, _mqar, range(16, 32)),
    "induction": (8, _induction, range(8)),
    "parity": (8, lambda x, y: _running(x, y, lambda s, v: (s + v) % 2, int), range(2)),
    "modadd": (8, lambda x, y: _running(x, y, lambda s, v: (s + v) % 5, int), range(5)),
    "s3": (8, lambda x, y: _running(x, y, _perm(3), int), range(6)),
    "s5": (8, lambda x, y: _running(x, y, _perm(5), int), range(120)),
    "cycle": (8, lambda x, y: _running(x, y, _cycle_step, int), range(5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_lab_task_targets_baseline_and_length(name):
    T, numpy_targets, guesses = CASES[name]
    task = tasks.make(name, T=T)
    sample = jax.jit(task.sample, static_argnums=1)
    xs, ys = (np.asarray(a) for a in sample(jax.random.key(3), B))
    assert xs.shape == ys.shape == (B, T) and task.time == T
    np.testing.assert_array_equal(ys, numpy_targets(xs, ys))
    # the same key draws the same batch; another key another
    np.testing.assert_array_equal(np.asarray(sample(jax.random.key(3), B)[0]), xs)
    assert not np.array_equal(np.asarray(sample(jax.random.key(4), B)[0]), xs)
    # the memoryless strategy: uniform over the stated classes at every target step
    logits = np.full((B, T, task.output_size), -1e9)
    logits[..., list(guesses)] = 0.0
    assert float(masked_loss(jnp.asarray(logits), jnp.asarray(ys))) == pytest.approx(
        task.baseline, rel=1e-9)
    assert task.baseline == pytest.approx(math.log(len(guesses)), rel=1e-12)
    assert task.loss is masked_loss and max(task.credit.targets) < T
    # evaluation at 4T: sequences of 4T steps, targets by the same rule
    long = tasks.make(name, T=4 * T)
    xl, yl = (np.asarray(a) for a in jax.jit(long.sample, static_argnums=1)(
        jax.random.key(5), 4))
    assert xl.shape == yl.shape == (4, 4 * T) and long.time == 4 * T
    np.testing.assert_array_equal(yl, numpy_targets(xl, yl))
