"""Bad input raises a clear error, before tracing, that names the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax
from rnnjax import cells


@pytest.fixture
def lstm():
    cell = cells.lstm(4)
    return cell, cell.init(jax.random.key(0), 3)


def test_wrong_rank(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match=r"xs must have rank >= 2 \(\*batch, time, features\), "
                                         r"got shape \(3,\)"):
        rnnjax.run(cell, p, jnp.ones(3))


def test_wrong_feature_count(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match="xs has 5 features but the lstm cell was built for 3"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 5)))


def test_lengths_wrong_shape(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match=r"lengths must have the batch shape of xs \(2,\), "
                                         r"got shape \(3,\)"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), lengths=jnp.array([1, 2, 3]))


@pytest.mark.parametrize("bad", [[8, 1], [-1, 3]])
def test_lengths_out_of_range(lstm, bad):
    cell, p = lstm
    with pytest.raises(ValueError, match=r"lengths must lie in \[0, 7\]"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), lengths=np.array(bad))


def test_lengths_not_integer(lstm):
    cell, p = lstm
    with pytest.raises(TypeError, match="lengths must be an integer array, got dtype float"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), lengths=jnp.array([1.0, 2.0]))


def test_carry_wrong_shape(lstm):
    cell, p = lstm
    carry = rnnjax.LSTMState(jnp.zeros((2, 4)), jnp.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"carry\.c has shape \(2, 5\) but \(2, 4\) was expected"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), carry=carry)


def test_carry_wrong_structure(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match="carry must have the structure"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), carry=rnnjax.HiddenState(jnp.zeros((2, 4))))


def test_integer_inputs(lstm):
    cell, p = lstm
    with pytest.raises(TypeError, match="xs must be a floating-point array, got dtype int"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3), jnp.int32))


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"activation must be one of \['identity', 'relu', "
                                         r"'tanh'\], got 'sigmoid'"):
        cells.elman(4, activation="sigmoid")


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_hidden_size(bad):
    with pytest.raises(ValueError, match=f"hidden_size must be a positive integer, got {bad!r}"):
        cells.gru(bad)


def test_bad_truncate_and_unroll(lstm):
    cell, p = lstm
    with pytest.raises(ValueError, match="truncate must be None or a positive integer, got 0"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), truncate=0)
    with pytest.raises(ValueError, match="unroll must be a positive integer, got 0"):
        rnnjax.run(cell, p, jnp.ones((2, 7, 3)), unroll=0)


def test_not_a_cell():
    with pytest.raises(TypeError, match="cell must be an rnnjax.Cell, got dict"):
        rnnjax.run({}, {}, jnp.ones((2, 7, 3)))


def test_errors_come_before_tracing(lstm, monkeypatch):
    """The checks run eagerly: nothing is traced or compiled for bad input."""
    cell, p = lstm
    calls = []
    monkeypatch.setattr(rnnjax.engine.sequence, "_run", lambda *a, **k: calls.append(1))
    with pytest.raises(ValueError):
        rnnjax.run(cell, p, jnp.ones((2, 7, 5)))
    assert calls == []


def test_layer_arguments():
    with pytest.raises(ValueError, match=r"merge must be one of \['concat', 'sum'\], got 'mean'"):
        rnnjax.bidirectional(cells.gru(3), merge="mean")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.0"):
        rnnjax.stack([cells.gru(3)], dropout=1.0)
    with pytest.raises(ValueError, match="merge='sum' needs equal output sizes"):
        rnnjax.bidirectional(cells.gru(3), cells.gru(4), merge="sum")
