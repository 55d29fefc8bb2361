r"""The LSTM through cuDNN (``jax.experimental.rnn``), with rnnjax's params and conventions.

``rnnjax.run(cell, params, xs, scan="cudnn")`` runs a plain LSTM (:func:`rnnjax.cells.lstm`
without layer norm) as one cuDNN call instead of a ``lax.scan``; outputs, final carry,
``lengths``, ``reverse`` and layouts are those of the sequential engine, and the backward
pass is cuDNN's own.

Params layout.  rnnjax's LSTM keeps ``W_xh (4H, F)``, ``W_hh (4H, H)`` and ``b (4H,)``
with gate blocks ``[i, f, g, o]``, the same order as cuDNN's ``CUDNN_LSTM`` and PyTorch's
``nn.LSTM``.  cuDNN takes one flat float32 vector; for one unidirectional layer
(``jax.experimental.rnn`` module docstring)::

    flat = [vec(W_ih) (4H*F), vec(W_hh) (4H*H), b_ih (4H), b_hh (4H)]     row-major vec

cuDNN adds two biases, rnnjax stores their sum ``b = b_ih + b_hh``.  :func:`to_cudnn`
writes ``b_ih = b`` and ``b_hh = 0``; :func:`from_cudnn` reads ``b = b_ih + b_hh``.  So
``from_cudnn(to_cudnn(p)) == p`` bit for bit, and ``to_cudnn(from_cudnn(w)) == w`` bit for
bit whenever ``w``'s ``b_hh`` is zero (for any other ``w`` both give the same LSTM).

What cuDNN's LSTM cannot do, and ``scan="cudnn"`` refuses with an error naming it:
``resets`` (no carry reset inside a sequence), ``truncate`` (no gradient cut between
steps), ``remat`` (cuDNN keeps its own reserve space), ``unroll`` (there is no loop to
unroll), ``grad="manual"`` (the backward is cuDNN's), any dtype but float32
(``jax.experimental.rnn`` supports float32 only), and any cell whose step is not the plain
LSTM (layer norm, other equations; checked on the cell's ``step``, not its name).  Length
0 is legal: cuDNN is given length 1 and the result replaced by the initial carry and zero
outputs.

Precision: like an XLA matmul, cuDNN may compute float32 products in TF32 on Ampere and
later GPUs unless ``jax.default_matmul_precision("float32")`` (or ``"highest"``) is set,
which both paths obey; expect differences of about 1e-3 relative from the sequential
scan otherwise.

Where there is no CUDA backend the call raises ``RuntimeError`` naming the backend.
:func:`choose_cudnn` lets ``scan="auto"`` pick cuDNN only on the backends in
:data:`CUDNN_AUTO_BACKENDS`, those where ``python -m benchmarks device`` measured it
faster than the sequential scan with matching results; no GPU was lent to measure it
yet, so the set is empty and ``"auto"`` never picks cuDNN (on CPU it never can).
"""

from __future__ import annotations

import contextlib
import functools
import math

import jax
import jax.experimental.rnn as jrnn
import jax.numpy as jnp
import numpy as np

from rnnjax.engine.inputs import common_float_dtype, flip_sequences, shape_dtype

__all__ = ["CUDNN", "CUDNN_AUTO_BACKENDS", "check_cudnn", "choose_cudnn", "cudnn_available",
           "from_cudnn", "lstm_sizes", "scan_cudnn", "to_cudnn"]

CUDNN = "cudnn"
# backends where scan="auto" picks cuDNN: those where the device benchmark showed it faster
# than the sequential scan (and equal to it to rounding).  None measured yet.
CUDNN_AUTO_BACKENDS: frozenset = frozenset()
_KEYS = ("W_xh", "W_hh", "b")


def lstm_sizes(params) -> tuple[int, int]:
    """``(input_size F, hidden_size H)`` of plain-LSTM params; ``ValueError`` naming the
    leaf when they are not ``{W_xh (4H, F), W_hh (4H, H), b (4H,)}``."""
    if not isinstance(params, dict) or set(params) != set(_KEYS):
        keys = sorted(params) if isinstance(params, dict) else type(params).__name__
        extra = sorted(set(params) - set(_KEYS)) if isinstance(params, dict) else []
        why = (f" (cuDNN's LSTM has no layer norm or other extra parameters: {extra})"
               if extra else "")
        raise ValueError(f"params must be a plain LSTM's {{'W_xh', 'W_hh', 'b'}}, got "
                         f"{keys}{why}")
    shapes = {k: shape_dtype(params[k])[0] for k in _KEYS}
    if len(shapes["W_hh"]) != 2 or shapes["W_hh"][0] != 4 * shapes["W_hh"][1]:
        raise ValueError(f"params['W_hh'] must have shape (4H, H), got {shapes['W_hh']}")
    H = shapes["W_hh"][1]
    if len(shapes["W_xh"]) != 2 or shapes["W_xh"][0] != 4 * H:
        raise ValueError(f"params['W_xh'] must have shape (4H, F) = ({4 * H}, F), "
                         f"got {shapes['W_xh']}")
    if shapes["b"] != (4 * H,):
        raise ValueError(f"params['b'] must have shape ({4 * H},), got {shapes['b']}")
    return shapes["W_xh"][1], H


def to_cudnn(params):
    """rnnjax LSTM params -> cuDNN's flat weights ``(4H (F + H + 2),)``:
    ``[vec W_xh, vec W_hh, b_ih = b, b_hh = 0]`` (exact; dtype kept)."""
    lstm_sizes(params)
    b = jnp.asarray(params["b"])
    return jnp.concatenate([jnp.ravel(params["W_xh"]), jnp.ravel(params["W_hh"]), b,
                            jnp.zeros_like(b)])


def from_cudnn(weights, input_size: int, hidden_size: int):
    """cuDNN's flat LSTM weights (one layer, one direction) -> rnnjax LSTM params
    ``{W_xh (4H, F), W_hh (4H, H), b = b_ih + b_hh (4H,)}``."""
    F, H = int(input_size), int(hidden_size)
    if F < 1 or H < 1:
        raise ValueError(f"input_size and hidden_size must be >= 1, got {F} and {H}")
    n = jrnn.get_num_params_in_lstm(F, H, 1, False)
    shape = shape_dtype(weights)[0]
    if shape != (n,):
        raise ValueError(f"weights must have shape ({n},) (one LSTM layer with input_size "
                         f"{F}, hidden_size {H}), got {shape}")
    w = jnp.asarray(weights)
    a, b = 4 * H * F, 4 * H * (F + H)
    return {"W_xh": w[:a].reshape(4 * H, F), "W_hh": w[a:b].reshape(4 * H, H),
            "b": w[b:b + 4 * H] + w[b + 4 * H:]}


def cudnn_available() -> bool:
    """True when the default backend is a CUDA GPU and jaxlib carries its cuDNN RNN
    kernels (ROCm's MIOpen orders the gates otherwise and is not supported here)."""
    if jax.default_backend() != "gpu":
        return False
    version = str(getattr(jax.devices()[0].client, "platform_version", "")).lower()
    return (jrnn.gpu_rnn is not None and "rocm" not in version
            and hasattr(jrnn.gpu_rnn, "compute_rnn_workspace_reserve_space_sizes"))


def _lstm_equations(weights, h, c, x):
    i, f, g, o = np.split(weights["W_xh"] @ x + weights["W_hh"] @ h + weights["b"], 4)
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    c = sig(f) * c + sig(i) * np.tanh(g)
    return sig(o) * np.tanh(c), c


def _check_step(cell, F: int, H: int):
    """Raise ``ValueError`` unless ``cell.step`` computes the plain LSTM."""
    error = _step_error(cell, F, H)
    if error:
        raise ValueError(error)


@functools.lru_cache(maxsize=64)
def _step_error(cell, F: int, H: int):
    """Why ``cell.step`` is not the plain LSTM, or None: one step at random float64
    params, carry and input, on the CPU, against the equations of this module (once per
    cell and size)."""
    rng = np.random.default_rng(0)
    p = {"W_xh": rng.normal(0, 1 / math.sqrt(F), (4 * H, F)),
         "W_hh": rng.normal(0, 1 / math.sqrt(H), (4 * H, H)), "b": rng.normal(0, 1, 4 * H)}
    h, c, x = rng.normal(0, 1, H), rng.normal(0, 1, H), rng.normal(0, 1, F)
    try:  # the CPU when JAX has one (JAX_PLATFORMS may leave only the GPU)
        cpu = jax.default_device(jax.devices("cpu")[0])
    except RuntimeError:
        cpu = contextlib.nullcontext()
    try:
        with jax.ensure_compile_time_eval(), cpu, jax.default_matmul_precision("highest"), \
                jax.enable_x64(True):
            carry = cell.initial_carry((), jnp.float64)
            if getattr(type(carry), "_fields", None) != ("h", "c"):
                raise ValueError(f"its carry is {type(carry).__name__}, not (h, c)")
            weights = cell.prepare({k: jnp.asarray(v) for k, v in p.items()})
            new, y = cell.step(weights, type(carry)(jnp.asarray(h), jnp.asarray(c)),
                               jnp.asarray(x))
            got = [np.asarray(a, np.float64) for a in (new.h, new.c, y)]
    except Exception as e:  # noqa: BLE001 - any failure means "not the plain LSTM"
        return (f"scan='cudnn' runs the plain LSTM only; the {cell.name} cell does not "
                f"take its params: {e}")
    want_h, want_c = _lstm_equations(p, h, c, x)
    for name, g_, w_ in (("h", got[0], want_h), ("c", got[1], want_c), ("y", got[2], want_h)):
        if g_.shape != w_.shape or not np.allclose(g_, w_, rtol=1e-9, atol=1e-12):
            return (f"scan='cudnn' runs the plain LSTM only (no layer norm, PyTorch/cuDNN "
                    f"equations); the {cell.name} cell's step computes another {name}")
    return None


def check_cudnn(cell, params, xs):
    """Check the cell, dtype and backend of a ``scan="cudnn"`` call of :func:`rnnjax.run`
    before tracing (``RuntimeError`` naming the backend when cuDNN is absent); the
    engine table has refused the options cuDNN does not take."""
    F, H = lstm_sizes(params)
    _check_step(cell, F, H)
    dtype = common_float_dtype(shape_dtype(xs)[1], params)
    if dtype != jnp.float32:
        raise ValueError(f"scan='cudnn' computes in float32 only (jax.experimental.rnn); "
                         f"xs and params give {np.dtype(dtype).name}")
    try:  # cuDNN's LSTM takes float32 or TF32 products, not bfloat16 ones
        jrnn._lstm_cudnn_allow_tf32(None)
    except NotImplementedError:
        raise ValueError(f"scan='cudnn' cannot run under jax.default_matmul_precision"
                         f"({jax.config.jax_default_matmul_precision!r}) (bfloat16 "
                         f"products); use 'float32' or 'tensorfloat32'") from None
    if not cudnn_available():
        raise RuntimeError(f"scan='cudnn' needs a CUDA GPU with cuDNN, but the backend is "
                           f"{jax.default_backend()!r}; use scan='sequential' or 'auto'")


def choose_cudnn(cell, params, xs) -> bool:
    """Whether ``scan="auto"`` takes cuDNN: the backend is in :data:`CUDNN_AUTO_BACKENDS`
    and :func:`check_cudnn` accepts the call (never on CPU)."""
    if jax.default_backend() not in CUDNN_AUTO_BACKENDS:
        return False
    try:
        check_cudnn(cell, params, xs)
    except (ValueError, RuntimeError):
        return False
    return True


def scan_cudnn(params, carry, xs, lengths=None, *, reverse=False, reference=False):
    """The plain LSTM over time-major, batch-flattened inputs by one cuDNN call.

    Args:
      params: ``{W_xh, W_hh, b}`` of :func:`rnnjax.cells.lstm`.
      carry: ``LSTMState(h, c)`` with leaves ``(B, H)``.
      xs: ``(T, B, F)``, zero past each length (as :func:`rnnjax.run` leaves them).
      lengths: ``(B,)`` integers in ``[0, T]`` or None.
      reverse: read each sequence from its last valid step to its first (flipped within
        its length before and after, :func:`rnnjax.engine.inputs.flip_sequences`).
      reference: run ``jax.experimental.rnn.lstm_ref`` (the same weights unpacked by
        JAX's own ``unpack_lstm_weights``, ``lax.scan``, any backend) instead of cuDNN:
        the CPU check of the layout and of this function's conventions.

    Returns:
      ``(ys (T, B, H), final carry)`` as :func:`rnnjax.engine.sequential.scan_cell` returns them.
    """
    T, B, F = xs.shape
    H = params["W_hh"].shape[1]
    if reverse:
        xs = flip_sequences(xs, lengths)
    seq = (jnp.full((B,), T, jnp.int32) if lengths is None
           else jnp.maximum(lengths, 1).astype(jnp.int32))  # cuDNN: lengths >= 1
    flat = to_cudnn(params)
    x = jnp.swapaxes(xs, 0, 1)
    h0, c0 = carry.h[None], carry.c[None]
    if reference:
        w_ih, w_hh, b_ih, b_hh = jrnn.unpack_lstm_weights(flat, F, H, 1, False)
        y, h, c = jrnn.lstm_ref(x, h0, c0, w_ih, w_hh, b_ih, b_hh, seq, F, H, 1, 0.0, False)
    else:
        y, h, c = jrnn.lstm(x, h0, c0, flat, seq, F, H, 1, 0.0, False)
    ys, final = jnp.swapaxes(y, 0, 1), type(carry)(h[0], c[0])
    if lengths is not None:  # zero outputs past the length; length 0 keeps the carry
        ys = jnp.where((jnp.arange(T)[:, None] < lengths)[..., None], ys, jnp.zeros_like(ys))
        final = jax.tree.map(lambda n, o: jnp.where((lengths > 0)[:, None], n, o), final,
                             carry)
    if reverse:
        ys = flip_sequences(ys, lengths)
    return ys, final
