r"""Maps from unconstrained real parameters to orthogonal and unitary matrices.

Every map is a pure, differentiable function of real arrays (complex numbers appear
only in what the unitary maps return), exact to machine precision: ``W^T W = I``
(``W^H W = I``) holds for *any* value of the parameters, so a gradient step on the
parameters can never leave the group.

=====================  =========================================  ==================
map                    matrix                                     paper
=====================  =========================================  ==================
:func:`expm_orthogonal`  ``W = B expm(A - A^T)``                   expRNN, Lezcano-Casado
                                                                   & Martinez-Rubio 2019
:func:`cayley`           ``W = (I + S)^{-1} (I - S) D``            scoRNN, Helfrich,
                                                                   Willmott & Ye 2018
:func:`householder_apply`  ``W = H_1 H_2 ... H_m``                 oRNN, Mhammedi et al.
                                                                   2017
:func:`urnn_apply`       ``W = D3 R2 F^{-1} D2 Pi R1 F D1``        uRNN, Arjovsky, Shah &
                                                                   Bengio 2016
:func:`eunn_apply`       ``W = D R_L ... R_1``                     EUNN, Jing et al. 2017
:func:`expm_unitary`     ``W = expm(K)``, ``K^H = -K``             full-capacity uRNN,
                                                                   Wisdom et al. 2016
=====================  =========================================  ==================

Skew generators are stored in a full ``(n, n)`` real array ``A`` of which
:func:`skew` uses only the strict upper triangle, ``S = triu(A, 1) - triu(A, 1)^T``,
so a gradient step on ``A`` moves ``S`` by exactly the skew gradient of the papers
(``V^T - V`` for scoRNN); the unused entries get zero gradient.  :func:`skew_hermitian`
uses all ``n^2`` entries (Wisdom et al.'s parameter count): the strict upper triangle
gives the real antisymmetric part, the strict lower triangle the imaginary symmetric
part, the diagonal the imaginary diagonal.

Initialisers (functions of ``(key, n, dtype)`` returning the parameter ``A`` of the
map they are named for):

==================  ============  ============  =============  =======================
initialiser         expm          cayley        expm_unitary   householder
==================  ============  ============  =============  =======================
identity            ``W = I``     ``W = D``     ``W = I``      ``W = I`` (m even)
henaff              angles        --            angles         angles (m = n even)
cayley_init         --            angles        --             --
haar                Haar SO(n)    Haar, det D   Haar U(n)      Gaussian vectors
==================  ============  ============  =============  =======================

"angles": ``W`` is block-diagonal with ``2 x 2`` rotations whose angles are drawn
(Henaff, Szlam & LeCun 2016: ``U[-pi, pi]``; scoRNN's Cayley init: ``U[0, pi/2]``);
its eigenvalues are ``exp(+-i theta_k)`` (:func:`block_angles` returns the ``theta``).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import expm

from rnnjax.core.checks import check_positive_int

__all__ = [
    "block_angles", "cayley", "cayley_haar", "cayley_init", "complex_dtype", "eunn_apply",
    "eunn_apply_factors", "eunn_coefficients", "eunn_dense", "eunn_pairs",
    "eunn_permutations", "expm_orthogonal", "expm_unitary", "haar_orthogonal",
    "haar_skew", "haar_unitary", "haar_unitary_skew", "henaff", "householder_apply",
    "householder_dense", "householder_henaff", "householder_identity", "householder_random",
    "householder_reflect", "householder_unit", "modrelu", "retrivialize",
    "scaling_diagonal", "skew", "skew_hermitian", "urnn_apply", "urnn_apply_factors",
    "urnn_dense", "urnn_factors", "urnn_init", "urnn_permutation",
]


def complex_dtype(dtype):
    """The complex dtype matching a real one (float32 -> complex64, float64 -> complex128)."""
    return jnp.result_type(dtype, jnp.complex64)


def _check_square(name, a):
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name} must be a square (n, n) matrix, got shape {a.shape}")


# --------------------------------------------------------------------------- skew maps
def skew(a):
    """``S = triu(A, 1) - triu(A, 1)^T``: the skew-symmetric matrix held by ``A (n, n)``."""
    u = jnp.triu(a, 1)
    return u - u.T


def skew_hermitian(a):
    """Skew-Hermitian ``K`` from all ``n^2`` real entries of ``A (n, n)``.

    ``K = (U - U^T) + i (L + L^T + diag(A))`` with ``U = triu(A, 1)``,
    ``L = tril(A, -1)``; ``K^H = -K``.  The real-skew part alone equals :func:`skew`,
    so every real generator (e.g. :func:`henaff`) is a valid unitary generator too.
    """
    low = jnp.tril(a, -1)
    imag = low + low.T + jnp.diag(jnp.diagonal(a))
    return jax.lax.complex(skew(a), imag)


def expm_orthogonal(a, base=None):
    r"""expRNN map: ``W = B expm(A - A^T)`` (Lezcano-Casado & Martinez-Rubio 2019).

    ``A (n, n)`` real (strict upper triangle used, see :func:`skew`); ``base`` the
    optional ``(n, n)`` orthogonal base ``B`` of the dynamic trivialization (treated as
    a constant: its gradient is stopped).  The gradient of ``expm`` is JAX's, which
    equals the block-matrix adjoint: for ``L = <G, expm(S)>``,
    ``dL/dS = [expm([[S^T, G], [0, S^T]])]_{12}``.
    """
    _check_square("A", a)
    w = expm(skew(a))
    if base is not None:
        w = jax.lax.stop_gradient(base) @ w
    return w


def expm_unitary(a):
    """Full-capacity unitary map ``W = expm(K)``, ``K`` = :func:`skew_hermitian` ``(A)``.

    ``n^2`` real parameters, the dimension of ``U(n)`` (Wisdom, Powers, Hershey,
    Le Roux & Atlas 2016, "Full-capacity unitary recurrent neural networks"; they
    move on the manifold with a Cayley retraction, here the exponential map of the
    Lie algebra is used instead, as expRNN does for ``SO(n)``).  Returns complex ``W``.
    """
    _check_square("A", a)
    return expm(skew_hermitian(a))


def retrivialize(params, key: str = "skew", base_key: str = "base", project: bool = True):
    r"""Dynamic trivialization (Lezcano-Casado 2019, Sec. 5): fold ``A`` into the base.

    For every dict in ``params`` holding both ``key`` and ``base_key``:
    ``B <- B expm(A - A^T)``, ``A <- 0``.  The represented matrix ``B expm(A - A^T)``
    is unchanged, and the next optimizer steps move on the group around the new base.
    Call it from the training loop every ``K`` steps (``K = inf`` gives the static
    trivialization; the runner does it with ``Config.retrivialize_every``).  With
    ``project`` the new base is re-projected onto the orthogonal group (``U V^T`` of its
    SVD, the nearest orthogonal matrix), so rounding errors of the repeated products do
    not accumulate in float32.  The params stay a plain pytree of the same structure, so
    the optimizer state stays valid (as in the reference code, it is not reset).

    Raises ``ValueError`` when no dict of ``params`` holds both keys (the params of a
    cell without the dynamic trivialization: folding would silently do nothing).
    """
    if not _holds_pair(params, key, base_key):
        raise ValueError(
            f"params hold no dict with both {key!r} and {base_key!r}: retrivialize needs "
            "the params of a cell built with the dynamic trivialization (e.g. "
            "exprnn(..., dynamic=True)); these are not, so nothing would change")
    return _retrivialize(params, key, base_key, project)


def _holds_pair(params, key, base_key) -> bool:
    if isinstance(params, dict):
        return (key in params and base_key in params) or any(
            _holds_pair(v, key, base_key) for v in params.values())
    if isinstance(params, (list, tuple)):
        return any(_holds_pair(v, key, base_key) for v in params)
    return False


def _retrivialize(params, key, base_key, project):
    if isinstance(params, dict):
        out = {k: _retrivialize(v, key, base_key, project) for k, v in params.items()}
        if key in params and base_key in params and not isinstance(params[key], dict):
            a, b = params[key], params[base_key]
            nb = b @ expm(skew(a))
            if project:
                u, _, vt = jnp.linalg.svd(nb)
                nb = u @ vt
            out[base_key] = nb.astype(b.dtype)
            out[key] = jnp.zeros_like(a)
        return out
    if isinstance(params, (list, tuple)) and not hasattr(params, "_fields"):
        return type(params)(_retrivialize(v, key, base_key, project) for v in params)
    return params


# --------------------------------------------------------------------------- Cayley
def scaling_diagonal(n: int, rho: int, dtype=jnp.float32):
    """scoRNN's ``D``: diagonal of ``n`` entries ``+-1``, the first ``rho`` equal to -1."""
    check_positive_int("n", n)
    if isinstance(rho, bool) or not isinstance(rho, int) or not 0 <= rho <= n:
        raise ValueError(f"rho must be an integer in [0, {n}], got {rho!r}")
    return jnp.where(jnp.arange(n) < rho, -1.0, 1.0).astype(dtype)


def cayley(a, d):
    r"""scoRNN map: ``W = (I + S)^{-1} (I - S) D`` with ``S = A - A^T`` (Helfrich et al. 2018).

    ``A (n, n)`` real (strict upper triangle used), ``d (n,)`` the diagonal of ``D``
    (entries ``+-1``, see :func:`scaling_diagonal`).  For ``L(W)`` with ``G = dL/dW`` the
    gradient with respect to the skew matrix is the paper's closed form
    ``V^T - V``, ``V = (I + S)^{-T} G (D + W^T)``; JAX's derivative of the solve gives
    exactly that (tested).
    """
    _check_square("A", a)
    s = skew(a)
    eye = jnp.eye(a.shape[0], dtype=a.dtype)
    return jnp.linalg.solve(eye + s, eye - s) * d[None, :]


# --------------------------------------------------------------------------- Householder
def householder_unit(u):
    """The unit reflection vectors ``q_k = u_k / ||u_k||`` of ``u (m, n)``."""
    if u.ndim != 2:
        raise ValueError(f"u must be (m, n) reflection vectors, got shape {u.shape}")
    return u / jnp.linalg.norm(u, axis=1, keepdims=True)


def householder_reflect(q, h):
    r"""``W h = H_1 ... H_m h`` with unit vectors ``q (m, n)``, ``H_k = I - 2 q_k q_k^T``.

    ``h (..., n)``; ``H_m`` acts first.  ``m <= 8`` reflections are unrolled (``m``
    rank-one updates per step, the cheap case), more run in a ``lax.scan``.
    """
    def reflect(h, qk):
        return h - 2.0 * (h @ qk)[..., None] * qk

    if q.shape[0] <= 8:
        for k in range(q.shape[0] - 1, -1, -1):
            h = reflect(h, q[k])
        return h
    h, _ = jax.lax.scan(lambda h, qk: (reflect(h, qk), None), h, q, reverse=True)
    return h


def householder_apply(u, h):
    r"""``W h`` with ``W = H_1 H_2 ... H_m``, ``H_k = I - 2 u_k u_k^T / ||u_k||^2``.

    oRNN (Mhammedi, Hellicar, Rahman & Bailey 2017).  ``u (m, n)``, ``h (..., n)``; cost
    ``O(n m)`` without forming ``W`` (``H_m`` is applied first):
    :func:`householder_reflect` of :func:`householder_unit` ``(u)``.
    """
    return householder_reflect(householder_unit(u), h)


def householder_dense(u):
    """The dense ``(n, n)`` matrix ``H_1 ... H_m`` of :func:`householder_apply`."""
    n = u.shape[1]
    return jax.vmap(lambda col: householder_apply(u, col), in_axes=1, out_axes=1)(
        jnp.eye(n, dtype=u.dtype))


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


# --------------------------------------------------------------------------- initialisers
def block_angles(key, n: int, low: float = -math.pi, high: float = math.pi,
                 dtype=jnp.float32):
    """The ``n // 2`` rotation angles drawn by :func:`henaff` (``U[low, high]``)."""
    return jax.random.uniform(key, (n // 2,), dtype, low, high)


def _blocks_from_values(s, n, dtype):
    """``A`` with ``A[2k, 2k+1] = s_k`` (so ``skew(A)`` has blocks ``[[0, s], [-s, 0]]``)."""
    idx = 2 * jnp.arange(s.shape[0])
    return jnp.zeros((n, n), dtype).at[idx, idx + 1].set(s.astype(dtype))


def henaff(key, n: int, dtype=jnp.float32):
    """Henaff et al. (2016) init for the exponential maps: ``expm(skew(A))`` is
    block-diagonal with ``2 x 2`` rotations by ``theta_k ~ U[-pi, pi]``
    (``theta =`` :func:`block_angles` ``(key, n)``; odd ``n`` leaves a trailing 1)."""
    check_positive_int("n", n)
    return _blocks_from_values(block_angles(key, n, dtype=dtype), n, dtype)


def cayley_init(key, n: int, dtype=jnp.float32):
    """scoRNN's Cayley init: skew blocks ``s_k = sqrt((1 - cos t_k) / (1 + cos t_k))`` with
    ``t_k ~ U[0, pi/2]`` (= :func:`block_angles` ``(key, n, 0, pi/2)``), so the Cayley
    transform is block-diagonal with rotations by ``-t_k`` (eigen-angles ``-+t_k``)."""
    check_positive_int("n", n)
    t = block_angles(key, n, 0.0, math.pi / 2, dtype)
    return _blocks_from_values(jnp.tan(t / 2), n, dtype)


def haar_orthogonal(key, n: int, dtype=jnp.float32, det: float | None = None):
    """Haar-random ``(n, n)`` orthogonal (QR of a Gaussian, signs corrected); with
    ``det = +-1`` the first column is flipped when needed to give that determinant."""
    q, r = jnp.linalg.qr(jax.random.normal(key, (n, n), dtype))
    q = q * jnp.sign(jnp.diagonal(r))[None, :]
    if det is not None:
        flip = jnp.sign(jnp.linalg.det(q)) != det
        q = q.at[:, 0].multiply(jnp.where(flip, -1.0, 1.0).astype(dtype))
    return q


def haar_unitary(key, n: int, dtype=jnp.float32):
    """Haar-random ``(n, n)`` unitary (QR of a complex Gaussian, phases corrected)."""
    k1, k2 = jax.random.split(key)
    z = jax.lax.complex(jax.random.normal(k1, (n, n), dtype),
                        jax.random.normal(k2, (n, n), dtype)) / math.sqrt(2)
    q, r = jnp.linalg.qr(z)
    dg = jnp.diagonal(r)
    return q * (dg / jnp.abs(dg))[None, :]


def haar_skew(key, n: int, dtype=jnp.float32):
    r"""``A`` with ``expm(skew(A))`` the Haar ``SO(n)`` matrix ``Q`` drawn from ``key``.

    The real logarithm is read from ``eigh(Q + Q^T)``: each (generically distinct)
    eigenvalue ``2 cos theta_k`` has a 2-dimensional eigenspace, the plane ``(u, v)``
    that ``Q`` rotates by ``theta_k = atan2(v^T Q u, u^T Q u)``; then
    ``log Q = sum_k theta_k (v u^T - u v^T)``.  Traceable; the result matches ``Q`` to
    the eigen-solver's accuracy, and ``expm(skew(A))`` is orthogonal exactly whatever it is.
    """
    check_positive_int("n", n)
    q = haar_orthogonal(key, n, dtype, det=1.0)
    _, vec = jnp.linalg.eigh(q + q.T)  # ascending; the lone +1 of odd n comes last
    m = n // 2
    u, v = vec[:, 0:2 * m:2], vec[:, 1:2 * m:2]
    theta = jnp.arctan2(jnp.sum(v * (q @ u), 0), jnp.sum(u * (q @ u), 0))
    log = (v * theta) @ u.T - (u * theta) @ v.T
    return jnp.triu(log, 1).astype(dtype)


def haar_unitary_skew(key, n: int, dtype=jnp.float32):
    r"""``A`` with ``expm(skew_hermitian(A))`` the Haar unitary drawn from ``key``.

    ``U = P diag(e^{i theta}) P^H`` with ``P`` the eigenvectors of the Hermitian
    ``(U + U^H) / 2`` (eigenvalues ``cos theta_k``, generically distinct) and
    ``theta_k = angle(p_k^H U p_k)``; ``K = P diag(i theta) P^H`` is then encoded in ``A``.
    """
    check_positive_int("n", n)
    u = haar_unitary(key, n, dtype)
    _, p = jnp.linalg.eigh((u + u.conj().T) / 2)
    theta = jnp.angle(jnp.sum(p.conj() * (u @ p), 0))
    k = (p * (1j * theta)) @ p.conj().T
    re, im = k.real, k.imag
    return (jnp.triu(re, 1) + jnp.tril(im, -1) + jnp.diag(jnp.diagonal(im))).astype(dtype)


def cayley_haar(key, n: int, d, dtype=jnp.float32):
    """``A`` with ``cayley(A, d)`` the Haar orthogonal drawn from ``key`` (determinant
    ``prod(d)``): ``S = (I - Q D)(I + Q D)^{-1}``."""
    check_positive_int("n", n)
    q = haar_orthogonal(key, n, dtype, det=jnp.prod(d))
    qd = q * d[None, :].astype(dtype)
    eye = jnp.eye(n, dtype=dtype)
    s = jnp.linalg.solve((eye + qd).T, (eye - qd).T).T
    return jnp.triu(s, 1).astype(dtype)


def householder_random(key, m: int, n: int, dtype=jnp.float32):
    """``m`` Gaussian reflection vectors ``(m, n)`` (for ``m = n`` a random orthogonal)."""
    return jax.random.normal(key, (m, n), dtype)


def householder_identity(m: int, n: int, dtype=jnp.float32):
    """Reflection vectors with ``H_1 ... H_m = I``: equal consecutive pairs
    ``u_{2k} = u_{2k+1} = e_k`` (``m`` must be even)."""
    if m % 2:
        raise ValueError(f"m must be even for the identity Householder init, got {m}")
    idx = jnp.arange(m // 2) % n
    return jnp.repeat(jax.nn.one_hot(idx, n, dtype=dtype), 2, axis=0)


def householder_henaff(key, n: int, dtype=jnp.float32):
    """Henaff init as ``n`` reflections (``n`` even): in plane ``(e_2k, e_2k+1)`` the
    reflections across lines at angles ``0`` and ``-theta_k / 2`` compose to a rotation
    by ``theta_k`` (:func:`block_angles` ``(key, n)``).  Returns ``(n, n)`` vectors."""
    if n % 2:
        raise ValueError(f"n must be even for the Henaff Householder init, got {n}")
    theta = block_angles(key, n, dtype=dtype)
    k = jnp.arange(n // 2)
    # reflection across the line at angle a has normal (-sin a, cos a)
    u = jnp.zeros((n, n), dtype)
    a1 = jnp.zeros_like(theta)
    a2 = -theta / 2
    u = u.at[2 * k, 2 * k].set(-jnp.sin(a1)).at[2 * k, 2 * k + 1].set(jnp.cos(a1))
    u = u.at[2 * k + 1, 2 * k].set(-jnp.sin(a2)).at[2 * k + 1, 2 * k + 1].set(jnp.cos(a2))
    return u
