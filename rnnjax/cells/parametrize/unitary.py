"""Structured unitary matrices applied without forming them: uRNN's product of diagonal
phases, reflections, a permutation and FFTs (Arjovsky et al. 2016), EUNN's tunable
layers of 2x2 rotations (Jing et al. 2017), and the modReLU nonlinearity."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax.cells.parametrize.maps import complex_dtype

__all__ = [
    "eunn_apply", "eunn_apply_factors", "eunn_coefficients", "eunn_dense", "eunn_pairs",
    "eunn_permutations", "modrelu", "urnn_apply", "urnn_apply_factors", "urnn_dense",
    "urnn_factors", "urnn_init", "urnn_permutation",
]


# --------------------------------------------------------------------------- uRNN
def urnn_permutation(key, n: int):
    """The fixed random permutation ``Pi`` of the uRNN (integer indices, ``(Pi h)_i = h[p_i]``)."""
    return jax.random.permutation(key, n)


def urnn_factors(phases, reflections):
    """``(d (3, n), v (2, n))``: the diagonals ``d_j = exp(i theta_j)`` and the unit
    reflection vectors ``v_k = (r_k0 + i r_k1) / ||.||`` of :func:`urnn_apply`."""
    v = jax.lax.complex(reflections[:, 0], reflections[:, 1])
    return jnp.exp(1j * phases), v / jnp.linalg.norm(v, axis=1, keepdims=True)


def urnn_apply_factors(d, v, perm, h):
    r"""``W h = D3 R2 F^{-1} D2 Pi R1 F D1 h`` from :func:`urnn_factors` (``h (..., n)``),
    ``R_k = I - 2 v_k v_k^H``, ``F`` the unitary DFT over the last axis."""
    def reflect(vk, x):
        return x - 2.0 * (x @ vk.conj())[..., None] * vk

    x = jnp.fft.fft(d[0] * h, norm="ortho")
    x = reflect(v[0], x)
    x = jnp.fft.ifft(d[1] * x[..., perm], norm="ortho")
    x = reflect(v[1], x)
    return d[2] * x


def urnn_apply(phases, reflections, perm, h):
    r"""Arjovsky's restricted unitary ``W h = D3 R2 F^{-1} D2 Pi R1 F D1 h``.

    (Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks".)
    ``phases (3, n)``: ``D_j = diag(exp(i theta_j))``; ``reflections (2, 2, n)``: the
    real and imaginary parts of ``v_1, v_2`` with ``R = I - 2 v v^H / ||v||^2``;
    ``perm (n,)`` the fixed permutation; ``F`` the unitary DFT (``norm="ortho"``);
    ``h (..., n)`` complex.  ``O(n log n)`` per application.
    """
    d, v = urnn_factors(phases.astype(h.real.dtype), reflections.astype(h.real.dtype))
    return urnn_apply_factors(d, v, perm, h)


def urnn_dense(phases, reflections, perm, dtype=jnp.complex64):
    """The dense complex ``(n, n)`` matrix of :func:`urnn_apply`."""
    n = phases.shape[-1]
    return jax.vmap(lambda c: urnn_apply(phases, reflections, perm, c), in_axes=1,
                    out_axes=1)(jnp.eye(n, dtype=dtype))


def urnn_init(key, n: int, dtype=jnp.float32):
    """Arjovsky's initialisation: phases ``U[-pi, pi]``, reflection entries ``U[-1, 1]``."""
    k1, k2 = jax.random.split(key)
    return (jax.random.uniform(k1, (3, n), dtype, -math.pi, math.pi),
            jax.random.uniform(k2, (2, 2, n), dtype, -1.0, 1.0))


# --------------------------------------------------------------------------- EUNN
def eunn_pairs(n: int, layer: int):
    """Index pairs ``(i, i+1)`` rotated by ``layer``: even layers start at 0, odd at 1."""
    off = layer % 2
    return [(i, i + 1) for i in range(off, n - 1, 2)]


def eunn_permutations(n: int, layers: int):
    """Per layer the index map ``perm`` with ``(R_l x)_i = c1_i x_i + c2_i x_{perm_i}``."""
    perms = []
    for layer in range(layers):
        i = np.array([p[0] for p in eunn_pairs(n, layer)], dtype=np.int32)
        perm = np.arange(n)
        perm[i], perm[i + 1] = i + 1, i
        perms.append(perm)
    return perms


def eunn_coefficients(angles, n):
    """``(c1 (L, n), c2 (L, n))`` with ``R_l x = c1_l * x + c2_l * x[perm_l]``
    (:func:`eunn_permutations`)."""
    c1s, c2s = [], []
    for layer in range(angles.shape[0]):
        pairs = eunn_pairs(n, layer)
        k = len(pairs)
        theta, phi = angles[layer, 0, :k], angles[layer, 1, :k]
        e = jnp.exp(1j * phi)
        c, s = jnp.cos(theta), jnp.sin(theta)
        i = np.array([p[0] for p in pairs], dtype=np.int32)
        j = i + 1
        c1s.append(jnp.ones((n,), e.dtype).at[i].set(e * c).at[j].set(c))
        c2s.append(jnp.zeros((n,), e.dtype).at[i].set(-e * s).at[j].set(s))
    return jnp.stack(c1s), jnp.stack(c2s)


def eunn_apply_factors(c1, c2, d, perms, h):
    """``W h = D R_L ... R_1 h`` from :func:`eunn_coefficients` ``(c1, c2)``, the phases
    ``d = exp(i omega)`` and :func:`eunn_permutations`; ``h (..., n)``."""
    for layer, perm in enumerate(perms):
        h = c1[layer] * h + c2[layer] * h[..., perm]
    return d * h


def eunn_apply(angles, phases, h):
    r"""EUNN (Jing, Shen, Dubcek, Peurifoy, Skirlo, LeCun, Tegmark & Soljacic 2017).

    ``W h = D R_L ... R_2 R_1 h``.  Layer ``l`` rotates the pairs
    :func:`eunn_pairs` ``(n, l)`` (alternately ``(0,1),(2,3),...`` and
    ``(1,2),(3,4),...``) by
    ``[[e^{i phi} cos theta, -e^{i phi} sin theta], [sin theta, cos theta]]``;
    ``D = diag(exp(i omega))``.  ``angles (L, 2, n // 2)`` holds ``theta`` then ``phi``
    (odd layers of even ``n`` use the first ``n/2 - 1`` entries); ``phases (n,)`` holds
    ``omega``.  ``L`` is the capacity (more layers, more of ``U(n)`` reachable; with
    this phase placement some phases of the last two layers are redundant with ``D``,
    so ``L = n`` gives fewer than ``n^2`` independent directions).  Cost ``O(n L)``.
    """
    n = h.shape[-1]
    h = h.astype(complex_dtype(angles.dtype))
    c1, c2 = eunn_coefficients(angles, n)
    perms = eunn_permutations(n, angles.shape[0])
    return eunn_apply_factors(c1, c2, jnp.exp(1j * phases), perms, h)


def eunn_dense(angles, phases):
    """The dense complex ``(n, n)`` matrix of :func:`eunn_apply`."""
    n = phases.shape[-1]
    return jax.vmap(lambda c: eunn_apply(angles, phases, c), in_axes=1, out_axes=1)(
        jnp.eye(n, dtype=complex_dtype(angles.dtype)))


# --------------------------------------------------------------------------- modReLU
def modrelu(z, b):
    r"""modReLU (Arjovsky et al. 2016): ``z / |z| * relu(|z| + b)``.

    Real ``z``: ``sign(z) relu(|z| + b)``.  Complex ``z``: the phase is kept and the
    modulus shifted.  At ``z = 0`` the output is 0 and the gradient is finite (no
    ``0/0``).  Example: ``z = [3+4i, 0.1]``, ``b = [-1, -0.5]`` gives ``[2.4+3.2i, 0]``.
    """
    if jnp.iscomplexobj(z):
        # On the real and imaginary parts: autodiff of the complex product ``z * scale``
        # made the unitary cells' forward+backward 1.6x slower on XLA:CPU.
        zr, zi = z.real, z.imag
        r2 = zr * zr + zi * zi
        pos = r2 > 0
        r = jnp.sqrt(jnp.where(pos, r2, 1.0))
        scale = jnp.where(pos, jax.nn.relu(r + b) / r, 0.0)
        return jax.lax.complex(zr * scale, zi * scale)
    return jnp.sign(z) * jax.nn.relu(jnp.abs(z) + b)
