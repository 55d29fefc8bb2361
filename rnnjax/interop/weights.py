r"""Weights from and to PyTorch (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) and Flax linen
(``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell``).

PyTorch (per layer ``k`` and direction, suffix ``""`` or ``"_reverse"``)::

    weight_ih_l{k}  (G*H, F_k)   ->  W_xh         (F_0 = input size, F_k = D*H for k > 0)
    weight_hh_l{k}  (G*H, H)     ->  W_hh
    bias_ih_l{k} + bias_hh_l{k}  ->  b            (Elman, LSTM: the two biases are summed)

with ``G = 1`` (Elman), ``4`` (LSTM, gates ``i, f, g, o``), ``3`` (GRU, ``r, z, n``).
The GRU keeps the hidden bias of its ``n`` block apart because the reset gate multiplies
it: ``b = b_ih + [b_hr, b_hz, 0]`` and ``b_hn = b_hh[2H:]``.  Gate orders are PyTorch's,
so no block is permuted.  With ``bias=False`` the rnnjax biases are zeros.

Because rnnjax stores only the sum ``b_ih + b_hh``, :func:`to_torch` writes the whole
sum into ``bias_ih`` and zeros into ``bias_hh`` (for the GRU: ``bias_hh = [0, 0, b_hn]``);
the network computed is the same, the split between the two biases is not recoverable.

Flax linen cells compute ``x @ kernel + bias`` with kernels ``(in, out)``; the rnnjax
matrices are their transposes, gate blocks stacked in PyTorch order::

    LSTMCell:  W_xh = [ii; if; ig; io].kernel^T, W_hh = [hi; hf; hg; ho].kernel^T,
               b = [hi; hf; hg; ho].bias         (Flax has no input-side LSTM bias)
    GRUCell:   W_xh = [ir; iz; in].kernel^T,     W_hh = [hr; hz; hn].kernel^T,
               b = [ir; iz; in].bias,            b_hn = hn.bias
               (Flax: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), the cuDNN form)

Flax's LSTM carry is ``(c, h)``; rnnjax's is ``LSTMState(h, c)``.

PyTorch is optional: this module imports without it; arrays are read through
``.detach().cpu().numpy()`` when they have it, ``numpy.asarray`` otherwise.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from rnnjax.cells.elman import elman
from rnnjax.cells.gated import gru, lstm
from rnnjax.core.cell import HiddenState, LSTMState
from rnnjax.core.checks import check_positive_int
from rnnjax.layers import Layer, stack, unidirectional
from rnnjax.layers import bidirectional as _bidirectional

MODES = {"rnn_tanh": 1, "rnn_relu": 1, "lstm": 4, "gru": 3}
_SUFFIXES = ("", "_reverse")


def _numpy(x) -> np.ndarray:
    """A numpy copy of a torch tensor, jax or numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16: widen exactly
            x = x.float()
        x = x.numpy()
    return np.asarray(x)


def _finite(where: str, a: np.ndarray, done: str = "loaded") -> np.ndarray:
    """``a`` if it is a floating-point array of finite numbers; else a ``ValueError``
    naming the weight ``where`` and how many entries are NaN / infinite."""
    if not np.issubdtype(a.dtype, np.floating):
        raise ValueError(f"{where} must be a floating-point weight, got dtype {a.dtype}")
    bad = ~np.isfinite(a)
    if bad.any():
        raise ValueError(f"{where} holds non-finite values ({int(np.isnan(a).sum())} NaN, "
                         f"{int(np.isinf(a).sum())} infinite of {a.size}, first at index "
                         f"{tuple(int(i) for i in np.argwhere(bad)[0])}); the weights "
                         f"are not {done}")
    return a


def _mode(mode) -> str:
    if not isinstance(mode, str) or mode.lower() not in MODES:
        raise ValueError(
            f"mode must be one of {sorted(MODES)} (PyTorch's RNN_TANH, RNN_RELU, LSTM, GRU; "
            f"any case), got {mode!r}")
    return mode.lower()


def _cell(mode: str, hidden_size: int):
    if mode == "lstm":
        return lstm(hidden_size, init="uniform")
    if mode == "gru":
        return gru(hidden_size, init="uniform")
    return elman(hidden_size, activation=mode[4:], init="uniform")


def torch_layer(mode: str, hidden_size: int, num_layers: int = 1,
                bidirectional: bool = False) -> Layer:
    """The rnnjax layer computing what PyTorch's RNN module of this shape computes.

    Always a :func:`rnnjax.layers.stack` (params and carries are lists, one entry per
    layer), of :func:`~rnnjax.layers.bidirectional` layers (``{"fwd", "bwd"}``) when
    ``bidirectional``, else :func:`~rnnjax.layers.unidirectional`.  Cells use
    PyTorch's uniform initialisation.  Pass ``time_major=not batch_first`` to ``apply``.
    """
    mode = _mode(mode)
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_layers", num_layers)
    cell = _cell(mode, hidden_size)
    one = _bidirectional(cell) if bidirectional else unidirectional(cell)
    return stack([one] * num_layers)


def _get(state_dict, key, shape):
    if key not in state_dict:
        present = ", ".join(sorted(state_dict)) or "none"
        raise ValueError(f"state_dict is missing key {key!r} (keys present: {present})")
    a = _numpy(state_dict[key])
    if a.shape != shape:
        raise ValueError(f"state_dict[{key!r}] must have shape {shape}, got {a.shape}")
    return _finite(f"state_dict[{key!r}]", a)


def from_torch(state_dict: Mapping[str, Any], *, mode: str, hidden_size: int,
               num_layers: int = 1, bidirectional: bool = False, bias: bool = True):
    """Load the ``state_dict`` of a PyTorch ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``.

    Args:
      state_dict: ``module.state_dict()`` (torch tensors or arrays).
      mode: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"`` (PyTorch's
        ``module.mode``, any case).
      hidden_size, num_layers, bidirectional, bias: as given to the PyTorch module.
        ``proj_size`` (LSTM projections) is not supported.

    Returns:
      ``(layer, params)``: the layer of :func:`torch_layer` and its params (a list, one
      entry per layer; ``{"fwd": ..., "bwd": ...}`` per layer when bidirectional).
      ``layer.apply(params, xs, lengths=lengths, time_major=not batch_first)`` gives
      PyTorch's output; :func:`carry_to_torch` turns its final carries into ``h_n, c_n``.

    Raises:
      ValueError: a missing or unexpected key, or a weight whose shape does not match
        ``mode``/``hidden_size`` (the message names the key, expected and actual shape).
    """
    mode = _mode(mode)
    check_positive_int("hidden_size", hidden_size)
    check_positive_int("num_layers", num_layers)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of names to tensors, got "
                        f"{type(state_dict).__name__}")
    G, H = MODES[mode], hidden_size
    D = 2 if bidirectional else 1
    first = "weight_ih_l0"
    if first not in state_dict:
        _get(state_dict, first, None)
    got = _numpy(state_dict[first]).shape
    if len(got) != 2 or got[0] != G * H:
        raise ValueError(
            f"state_dict['weight_ih_l0'] must have shape ({G * H}, input_size) for "
            f"mode={mode!r} and hidden_size={H} ({G} gate blocks of {H}), got {got}")
    input_size = got[1]
    expected_keys, params = set(), []
    for k in range(num_layers):
        F = input_size if k == 0 else D * H
        directions = {}
        for d, suffix in zip(("fwd", "bwd"), _SUFFIXES[:D]):
            names = [f"{n}_l{k}{suffix}" for n in ("weight_ih", "weight_hh", "bias_ih",
                                                   "bias_hh")]
            expected_keys.update(names if bias else names[:2])
            w_ih = _get(state_dict, names[0], (G * H, F))
            w_hh = _get(state_dict, names[1], (G * H, H))
            if bias:
                b_ih = _get(state_dict, names[2], (G * H,))
                b_hh = _get(state_dict, names[3], (G * H,))
            else:
                b_ih = b_hh = np.zeros((G * H,), w_ih.dtype)
            p = {"W_xh": jnp.asarray(w_ih), "W_hh": jnp.asarray(w_hh)}
            if mode == "gru":
                p["b"] = jnp.asarray(b_ih + np.concatenate([b_hh[:2 * H],
                                                            np.zeros_like(b_hh[2 * H:])]))
                p["b_hn"] = jnp.asarray(b_hh[2 * H:])
            else:
                p["b"] = jnp.asarray(b_ih + b_hh)
            directions[d] = p
        params.append(directions if bidirectional else directions["fwd"])
    extra = sorted(set(state_dict) - expected_keys)
    if extra:
        raise ValueError(
            f"state_dict has keys {extra} that a {mode} module with num_layers={num_layers}, "
            f"bidirectional={bidirectional}, bias={bias} does not have (proj_size is not "
            f"supported)")
    return torch_layer(mode, H, num_layers, bidirectional), params


def from_torch_module(module):
    """:func:`from_torch` reading mode and sizes from a PyTorch ``nn.RNN``/``LSTM``/``GRU``.

    Returns ``(layer, params)``.  The layer keeps the module's layout as its default:
    for a ``batch_first=False`` module (PyTorch's default) ``layer.apply(params, xs)``
    reads ``xs`` as ``(time, batch, features)``, as the module does (``time_major=False``
    still selects batch-major); for ``batch_first=True`` it reads ``(batch, time,
    features)``.
    """
    for attr in ("mode", "hidden_size", "num_layers", "bidirectional", "bias"):
        if not hasattr(module, attr):
            raise TypeError(f"module must be a torch nn.RNN, nn.LSTM or nn.GRU, got "
                            f"{type(module).__name__} (no attribute {attr!r})")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"module.proj_size must be 0 (LSTM projections are not supported), "
                         f"got {module.proj_size}")
    layer, params = from_torch(module.state_dict(), mode=module.mode,
                               hidden_size=module.hidden_size, num_layers=module.num_layers,
                               bidirectional=module.bidirectional, bias=module.bias)
    batch_first = getattr(module, "batch_first", False)
    if not isinstance(batch_first, bool):
        raise TypeError(f"module.batch_first must be True or False, got {batch_first!r}")
    return _with_layout(layer, time_major=not batch_first), params


def _with_layout(layer, *, time_major: bool):
    """``layer`` whose ``apply`` defaults to ``time_major`` (the module's own layout)."""
    if not time_major:
        return layer
    apply = layer.apply

    def apply_time_major(params, xs, *, time_major=True, **options):
        return apply(params, xs, time_major=time_major, **options)

    return layer._replace(apply=apply_time_major)


def _layers(params):
    """Params of a stack as a list (a single layer's params are wrapped)."""
    if isinstance(params, Mapping):
        return [params]
    if not isinstance(params, (list, tuple)) or not params:
        raise ValueError(f"params must be a non-empty list of per-layer params (as from "
                         f"from_torch), got {type(params).__name__}")
    return list(params)


def to_torch(params, *, mode: str, bias: bool = True, as_tensors: bool = False):
    """Export rnnjax params to a PyTorch RNN ``state_dict``.

    Args:
      params: per-layer params as returned by :func:`from_torch` (a list; each entry a
        cell's params, or ``{"fwd", "bwd"}`` for a bidirectional layer).
      mode: ``"rnn_tanh"``, ``"rnn_relu"``, ``"lstm"`` or ``"gru"``.
      bias: whether the target module has biases; with ``bias=False`` every rnnjax bias
        must be zero (else ``ValueError``: it could not be represented).
      as_tensors: return ``torch.Tensor`` values (imports torch) instead of numpy arrays.

    Returns:
      An ``OrderedDict`` in PyTorch's key order (``weight_ih_l0``, ``weight_hh_l0``,
      ``bias_ih_l0``, ``bias_hh_l0``, ``weight_ih_l0_reverse``, ...) that loads with
      ``module.load_state_dict(sd)`` (strict).  ``bias_ih`` holds the summed bias and
      ``bias_hh`` zeros (GRU: ``[0, 0, b_hn]``).
    """
    mode = _mode(mode)
    G = MODES[mode]
    layers = _layers(params)
    bidir = isinstance(layers[0], Mapping) and "fwd" in layers[0]
    out = OrderedDict()
    for k, layer in enumerate(layers):
        if bidir != (isinstance(layer, Mapping) and "fwd" in layer):
            raise ValueError(f"params[{k}] must {'' if bidir else 'not '}be a bidirectional "
                             f"{{'fwd', 'bwd'}} dict like params[0], got keys "
                             f"{sorted(layer) if isinstance(layer, Mapping) else layer!r}")
        cells = [layer["fwd"], layer["bwd"]] if bidir else [layer]
        for p, suffix in zip(cells, _SUFFIXES):
            where = f"params[{k}]" + ("" if not bidir else
                                      "['fwd']" if suffix == "" else "['bwd']")
            want = {"W_xh", "W_hh", "b"} | ({"b_hn"} if mode == "gru" else set())
            if not isinstance(p, Mapping) or set(p) != want:
                raise ValueError(f"{where} must hold exactly {sorted(want)} for mode={mode!r}, "
                                 f"got {sorted(p) if isinstance(p, Mapping) else p!r}")
            w_ih, w_hh, b = (_finite(f"{where}[{n!r}]", _numpy(p[n]), "exported")
                             for n in ("W_xh", "W_hh", "b"))
            if mode == "gru":
                _finite(f"{where}['b_hn']", _numpy(p["b_hn"]), "exported")
            H = w_hh.shape[-1]
            if w_hh.shape != (G * H, H):
                raise ValueError(f"{where}['W_hh'] must have shape ({G}*H, H) for "
                                 f"mode={mode!r}, got {w_hh.shape}")
            out[f"weight_ih_l{k}{suffix}"] = w_ih.copy()
            out[f"weight_hh_l{k}{suffix}"] = w_hh.copy()
            b_hh = np.zeros_like(b)
            if mode == "gru":
                b_hh[2 * H:] = _numpy(p["b_hn"])
            if bias:
                out[f"bias_ih_l{k}{suffix}"] = b.copy()
                out[f"bias_hh_l{k}{suffix}"] = b_hh
            elif np.any(b != 0) or np.any(b_hh != 0):
                raise ValueError(f"bias=False needs zero biases, but {where} has non-zero "
                                 f"'b'{' or b_hn' if mode == 'gru' else ''}")
    if as_tensors:
        import torch

        out = OrderedDict((k, torch.from_numpy(np.ascontiguousarray(v)))
                          for k, v in out.items())
    return out


def carry_to_torch(carries):
    """Final carries of a stack (list per layer, ``{"fwd", "bwd"}`` when bidirectional)
    as PyTorch's ``h_n`` (and ``c_n`` for LSTMs), each ``(num_layers * D, *batch, H)``
    with index ``layer * D + direction``.  Returns ``h_n`` or ``(h_n, c_n)``."""
    states = []
    for c in _layers(carries):
        states.extend([c["fwd"], c["bwd"]] if isinstance(c, Mapping) else [c])
    h = jnp.stack([s.h for s in states])
    if isinstance(states[0], LSTMState):
        return h, jnp.stack([s.c for s in states])
    return h


def carry_from_torch(h_0, c_0=None, *, num_layers: int = 1, bidirectional: bool = False):
    """PyTorch's initial state ``h_0`` (and ``c_0`` for LSTMs), ``(num_layers * D, B, H)``,
    as the ``carry`` argument of a stack's ``apply`` (the inverse of
    :func:`carry_to_torch`)."""
    D = 2 if bidirectional else 1
    h = jnp.asarray(_numpy(h_0))
    c = None if c_0 is None else jnp.asarray(_numpy(c_0))
    if h.shape[0] != num_layers * D:
        raise ValueError(f"h_0 must have num_layers * num_directions = {num_layers * D} "
                         f"entries on axis 0, got shape {h.shape}")
    if c is not None and c.shape != h.shape:
        raise ValueError(f"c_0 must have the shape of h_0 {h.shape}, got {c.shape}")

    def state(i):
        return HiddenState(h[i]) if c is None else LSTMState(h[i], c[i])

    if bidirectional:
        return [{"fwd": state(2 * k), "bwd": state(2 * k + 1)} for k in range(num_layers)]
    return [state(k) for k in range(num_layers)]


# ----------------------------------------------------------------------------- Flax


def _flax_cell_params(params):
    """Unwrap ``{"params": ...}`` and ``nn.RNN``'s ``{"cell": ...}``."""
    p = params
    for key in ("params", "cell"):
        if isinstance(p, Mapping) and key in p and len(p) == 1:
            p = p[key]
    return p


def _flax_dense(p, name, use_bias, kind):
    if not isinstance(p, Mapping) or name not in p:
        got = sorted(p) if isinstance(p, Mapping) else type(p).__name__
        raise ValueError(f"Flax {kind} params must have a {name!r} entry, got {got}")
    d = p[name]
    if not isinstance(d, Mapping) or "kernel" not in d or (use_bias and "bias" not in d):
        got = sorted(d) if isinstance(d, Mapping) else type(d).__name__
        raise ValueError(f"Flax {kind} params[{name!r}] must hold 'kernel'"
                         f"{' and bias' if use_bias else ''}, got {got}")
    where = f"Flax {kind} params[{name!r}]"
    k = _finite(f"{where}['kernel']", np.asarray(d["kernel"]))
    if k.ndim != 2:
        raise ValueError(f"{where}['kernel'] must be (in, out), got shape {k.shape}")
    b = _finite(f"{where}['bias']", np.asarray(d["bias"])) if use_bias else None
    return jnp.asarray(k), (None if b is None else jnp.asarray(b))


def _stack_kernels(p, names, kind):
    ks = [_flax_dense(p, n, False, kind)[0] for n in names]
    H = ks[0].shape[1]
    for n, k in zip(names, ks):
        if k.shape[1] != H:
            raise ValueError(f"Flax {kind} params[{n!r}]['kernel'] must have {H} output "
                             f"features like {names[0]!r}, got shape {k.shape}")
    return jnp.concatenate([k.T for k in ks], 0)


def from_flax_lstm(params):
    """rnnjax :func:`~rnnjax.cells.lstm` params from Flax ``LSTMCell`` (or
    ``OptimizedLSTMCell``) params; ``params`` may be the cell's, ``{"params": ...}`` or
    an ``nn.RNN``'s ``{"params": {"cell": ...}}``.  Run with ``rnnjax.cells.lstm(H)``."""
    p = _flax_cell_params(params)
    w_xh = _stack_kernels(p, ["ii", "if", "ig", "io"], "LSTMCell")
    w_hh = _stack_kernels(p, ["hi", "hf", "hg", "ho"], "LSTMCell")
    b = jnp.concatenate([_flax_dense(p, n, True, "LSTMCell")[1] for n in
                         ["hi", "hf", "hg", "ho"]])
    return {"W_xh": w_xh, "W_hh": w_hh, "b": b}


def from_flax_gru(params):
    """rnnjax :func:`~rnnjax.cells.gru` params from Flax ``GRUCell`` params (same
    wrappers as :func:`from_flax_lstm`).  Run with ``rnnjax.cells.gru(H)``."""
    p = _flax_cell_params(params)
    w_xh = _stack_kernels(p, ["ir", "iz", "in"], "GRUCell")
    w_hh = _stack_kernels(p, ["hr", "hz", "hn"], "GRUCell")
    b = jnp.concatenate([_flax_dense(p, n, True, "GRUCell")[1] for n in ["ir", "iz", "in"]])
    return {"W_xh": w_xh, "W_hh": w_hh, "b": b, "b_hn": _flax_dense(p, "hn", True,
                                                                   "GRUCell")[1]}


def _check_cell_params(params, want, kind):
    if not isinstance(params, Mapping) or set(params) != want:
        got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
        raise ValueError(f"params must be rnnjax {kind} params with keys {sorted(want)}, "
                         f"got {got}")


def to_flax_lstm(params):
    """Flax ``LSTMCell`` params (the cell's dict, without the ``"params"`` wrapper) from
    rnnjax LSTM params (without layer norm).  The inverse of :func:`from_flax_lstm`."""
    _check_cell_params(params, {"W_xh", "W_hh", "b"}, "lstm")
    wx, wh, b = (jnp.split(jnp.asarray(params[k]), 4) for k in ("W_xh", "W_hh", "b"))
    out = {}
    for j, g in enumerate("ifgo"):
        out["i" + g] = {"kernel": wx[j].T}
        out["h" + g] = {"kernel": wh[j].T, "bias": b[j]}
    return out


def to_flax_gru(params):
    """Flax ``GRUCell`` params from rnnjax GRU params; the inverse of
    :func:`from_flax_gru`."""
    _check_cell_params(params, {"W_xh", "W_hh", "b", "b_hn"}, "gru")
    wx, wh, b = (jnp.split(jnp.asarray(params[k]), 3) for k in ("W_xh", "W_hh", "b"))
    out = {}
    for j, g in enumerate("rzn"):
        out["i" + g] = {"kernel": wx[j].T, "bias": b[j]}
        out["h" + g] = {"kernel": wh[j].T}
    out["hn"]["bias"] = jnp.asarray(params["b_hn"])
    return out


__all__ = ["MODES", "carry_from_torch", "carry_to_torch", "from_flax_gru", "from_flax_lstm",
           "from_torch", "from_torch_module", "to_flax_gru", "to_flax_lstm", "to_torch",
           "torch_layer"]
