"""Orthogonal / unitary maps: exactness, fast applications, gradients, initialisers."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.linalg import expm
from jax.test_util import check_grads

from rnnjax import optim
from rnnjax import parametrize as P

N = 10
TOL = {jnp.float32: 1e-5, jnp.float64: 1e-12}


def _d(n, dtype):
    return P.scaling_diagonal(n, 3, dtype)


# Each case: name -> (init(key, dtype) -> params dict, matrix(params) -> dense W).
CASES = {
    "expm-henaff": (lambda k, t: {"a": P.henaff(k, N, t)},
                    lambda p: P.expm_orthogonal(p["a"])),
    "expm-cayley": (lambda k, t: {"a": P.cayley_init(k, N, t)},
                    lambda p: P.expm_orthogonal(p["a"])),
    "expm-haar": (lambda k, t: {"a": P.haar_skew(k, N, t)},
                  lambda p: P.expm_orthogonal(p["a"])),
    "expm-identity": (lambda k, t: {"a": jnp.zeros((N, N), t)},
                      lambda p: P.expm_orthogonal(p["a"])),
    "expm-dynamic": (lambda k, t: {"a": P.henaff(k, N, t),
                                   "base": P.haar_orthogonal(jax.random.fold_in(k, 1), N, t)},
                     lambda p: P.expm_orthogonal(p["a"], p["base"])),
    "cayley-cayley": (lambda k, t: {"a": P.cayley_init(k, N, t)},
                      lambda p: P.cayley(p["a"], _d(N, p["a"].dtype))),
    "cayley-haar": (lambda k, t: {"a": P.cayley_haar(k, N, _d(N, t), t)},
                    lambda p: P.cayley(p["a"], _d(N, p["a"].dtype))),
    "cayley-identity": (lambda k, t: {"a": jnp.zeros((N, N), t)},
                        lambda p: P.cayley(p["a"], _d(N, p["a"].dtype))),
    "householder-random": (lambda k, t: {"u": P.householder_random(k, 6, N, t)},
                           lambda p: P.householder_dense(p["u"])),
    "householder-identity": (lambda k, t: {"u": P.householder_identity(4, N, t)},
                             lambda p: P.householder_dense(p["u"])),
    "householder-henaff": (lambda k, t: {"u": P.householder_henaff(k, N, t)},
                           lambda p: P.householder_dense(p["u"])),
    "urnn": (lambda k, t: dict(zip(("ph", "r"), P.urnn_init(k, N, t))),
             lambda p: P.urnn_dense(p["ph"], p["r"], np.arange(N)[::-1],
                                    P.complex_dtype(p["ph"].dtype))),
    "eunn": (lambda k, t: {"ang": jax.random.uniform(k, (4, 2, N // 2), t, -3.1, 3.1),
                           "ph": jax.random.uniform(jax.random.fold_in(k, 1), (N,), t, -3, 3)},
             lambda p: P.eunn_dense(p["ang"], p["ph"])),
    "unitary-haar": (lambda k, t: {"a": P.haar_unitary_skew(k, N, t)},
                     lambda p: P.expm_unitary(p["a"])),
    "unitary-henaff": (lambda k, t: {"a": P.henaff(k, N, t)},
                       lambda p: P.expm_unitary(p["a"])),
    "unitary-identity": (lambda k, t: {"a": jnp.zeros((N, N), t)},
                         lambda p: P.expm_unitary(p["a"])),
}


CASES = {k: (init, jax.jit(matrix)) for k, (init, matrix) in CASES.items()}


def _defect(w):
    w = np.asarray(w)
    return np.abs(w.conj().T @ w - np.eye(w.shape[0])).max()


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
@pytest.mark.parametrize("case", sorted(CASES))
def test_orthogonal_at_init(case, dtype):
    init, matrix = CASES[case]
    w = matrix(init(jax.random.key(3), dtype))
    assert w.dtype in (dtype, P.complex_dtype(dtype))
    assert _defect(w) < TOL[dtype]


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_orthogonal_after_1000_steps(dtype):
    """1000 RMSprop steps of the recipe on random gradients; ``W`` stays orthogonal /
    unitary and has moved far from its initial value -- for every case.  All cases are
    trained together in one compiled scan (one program per dtype); the optimizer labels
    each leaf by its own dict key, so nesting them under the case name changes nothing."""
    params = {case: CASES[case][0](jax.random.key(4), dtype) for case in sorted(CASES)}
    trained = _train(params)
    for case in sorted(CASES):
        matrix = CASES[case][1]
        w0, w = matrix(params[case]), matrix(trained[case])
        assert _defect(w) < TOL[dtype], case
        assert np.abs(np.asarray(w) - np.asarray(w0)).max() > 1e-1, case


_TX = optim.recipe("rmsprop", lr=1e-2, lr_orth=1e-2)


def _train(params, steps=1000):
    """``steps`` recipe updates on standard-normal gradients, drawn up front with numpy
    (drawing them inside the scan inlined one threefry program per leaf, which cost more
    to compile than everything else here); one compiled scan."""
    rng = np.random.default_rng(5)
    grads = jax.tree.map(lambda a: rng.standard_normal((steps,) + a.shape).astype(a.dtype),
                         params)
    return _scan_updates(params, grads)


@jax.jit
def _scan_updates(params, grads):
    def body(carry, g):
        p, s = carry
        u, s = _TX.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(body, (params, _TX.init(params)), grads)
    return p


@pytest.mark.parametrize("case", sorted(CASES))
def test_norm_preserving_and_linear(case):
    init, matrix = CASES[case]
    w = matrix(init(jax.random.key(6), jnp.float64))
    k1, k2 = jax.random.split(jax.random.key(7))
    h1, h2 = jax.random.normal(k1, (N,)), jax.random.normal(k2, (N,))
    if jnp.iscomplexobj(w):
        h1 = h1 + 1j * jax.random.normal(k2, (N,))
    a, b = 0.7, -1.3
    np.testing.assert_allclose(jnp.linalg.norm(w @ h1), jnp.linalg.norm(h1), rtol=1e-12)
    np.testing.assert_allclose(w @ (a * h1 + b * h2), a * (w @ h1) + b * (w @ h2), atol=1e-12)


# ----------------------------------------------------------------- fast applications
def _reflection(u):
    return np.eye(u.shape[0]) - 2 * np.outer(u, u.conj()) / np.vdot(u, u).real


def test_householder_fast_equals_product_of_reflections():
    u = np.asarray(P.householder_random(jax.random.key(0), 5, N, jnp.float64))
    dense = np.linalg.multi_dot([_reflection(uk) for uk in u])
    h = np.random.default_rng(0).normal(size=N)
    np.testing.assert_allclose(P.householder_apply(u, h), dense @ h, atol=1e-13)
    np.testing.assert_allclose(P.householder_dense(u), dense, atol=1e-13)
    hs = np.random.default_rng(1).normal(size=(3, N))  # linear, batched by vmap
    np.testing.assert_allclose(jax.vmap(lambda x: P.householder_apply(u, x))(hs), hs @ dense.T,
                               atol=1e-13)


def test_urnn_fast_equals_dense_formula():
    ph, r = P.urnn_init(jax.random.key(1), N, jnp.float64)
    perm = np.asarray(P.urnn_permutation(jax.random.key(2), N))
    ph, r = np.asarray(ph), np.asarray(r)
    d = [np.diag(np.exp(1j * ph[j])) for j in range(3)]
    refl = [_reflection(r[j, 0] + 1j * r[j, 1]) for j in range(2)]
    f = np.fft.fft(np.eye(N), norm="ortho")  # unitary DFT matrix
    pi = np.eye(N)[perm]  # (Pi h)_i = h[perm_i]
    dense = d[2] @ refl[1] @ f.conj().T @ d[1] @ pi @ refl[0] @ f @ d[0]
    h = np.random.default_rng(0).normal(size=N) + 1j * np.random.default_rng(1).normal(size=N)
    np.testing.assert_allclose(P.urnn_apply(ph, r, perm, h), dense @ h, atol=1e-13)
    np.testing.assert_allclose(P.urnn_dense(ph, r, perm, jnp.complex128), dense, atol=1e-13)


@pytest.mark.parametrize("n", [6, 7])
def test_eunn_layers_equal_product_of_rotations(n):
    L = 3
    ang = np.asarray(jax.random.uniform(jax.random.key(2), (L, 2, n // 2), jnp.float64, -3, 3))
    om = np.asarray(jax.random.uniform(jax.random.key(3), (n,), jnp.float64, -3, 3))
    dense = np.eye(n, dtype=complex)
    for layer in range(L):
        r = np.eye(n, dtype=complex)
        for k, (i, j) in enumerate(P.eunn_pairs(n, layer)):
            th, phi = ang[layer, 0, k], ang[layer, 1, k]
            e = np.exp(1j * phi)
            r[i, i], r[i, j] = e * np.cos(th), -e * np.sin(th)
            r[j, i], r[j, j] = np.sin(th), np.cos(th)
        dense = r @ dense
    dense = np.diag(np.exp(1j * om)) @ dense
    assert P.eunn_pairs(n, 0)[0] == (0, 1) and P.eunn_pairs(n, 1)[0] == (1, 2)
    h = np.random.default_rng(0).normal(size=n) + 0j
    np.testing.assert_allclose(P.eunn_apply(ang, om, h), dense @ h, atol=1e-13)
    np.testing.assert_allclose(P.eunn_dense(ang, om), dense, atol=1e-13)


# ----------------------------------------------------------------- gradients
def _real_out(fn):
    def g(*args):
        w = fn(*args)
        return jnp.stack([jnp.real(w), jnp.imag(w)]) if jnp.iscomplexobj(w) else w
    return g


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_check_grads_float64(case):
    init, matrix = CASES[case]
    params = init(jax.random.key(8), jnp.float64)
    params = jax.tree.map(lambda a: a + 0.05 * jax.random.normal(jax.random.key(9), a.shape),
                          params)
    fixed = {k: v for k, v in params.items() if k == "base"}  # the base is a constant
    free = {k: v for k, v in params.items() if k != "base"}
    check_grads(_real_out(lambda p: matrix({**p, **fixed})), (free,), order=1,
                modes=("fwd", "rev"), atol=1e-5, rtol=1e-5)


def test_cayley_gradient_closed_form():
    n, dtype = 7, jnp.float64
    k1, k2 = jax.random.split(jax.random.key(0))
    a = jax.random.normal(k1, (n, n), dtype)
    g = jax.random.normal(k2, (n, n), dtype)
    d = P.scaling_diagonal(n, 2, dtype)
    grad = jax.grad(lambda a: jnp.sum(g * P.cayley(a, d)))(a)
    s = P.skew(a)
    w = P.cayley(a, d)
    v = np.linalg.solve((np.eye(n) + s).T, g) @ (np.diag(d) + w.T)  # (I+A)^-T G (D + W^T)
    np.testing.assert_allclose(grad, np.triu(v.T - v, 1), atol=1e-12)


def test_expm_gradient_block_adjoint():
    n, dtype = 6, jnp.float64
    k1, k2 = jax.random.split(jax.random.key(1))
    a = jax.random.normal(k1, (n, n), dtype)
    g = jax.random.normal(k2, (n, n), dtype)
    s = P.skew(a)
    block = np.block([[s.T, g], [np.zeros((n, n)), s.T]])
    adj = np.asarray(expm(jnp.asarray(block)))[:n, n:]  # dL/dS for L = <G, expm(S)>
    grad_s = jax.grad(lambda s: jnp.sum(g * expm(s)))(s)
    np.testing.assert_allclose(grad_s, adj, atol=1e-12)
    grad_a = jax.grad(lambda a: jnp.sum(g * P.expm_orthogonal(a)))(a)
    np.testing.assert_allclose(grad_a, np.triu(adj - adj.T, 1), atol=1e-12)


# ----------------------------------------------------------------- initialisers
def _angles(w):
    return np.sort(np.angle(np.linalg.eigvals(np.asarray(w))))


@pytest.mark.parametrize("which", ["expm", "unitary", "householder"])
def test_henaff_eigenvalue_angles(which):
    n, key = 12, jax.random.key(11)
    theta = np.asarray(P.block_angles(key, n, dtype=jnp.float64))
    assert theta.min() >= -math.pi and theta.max() <= math.pi and np.ptp(theta) > 1.0
    w = {"expm": lambda: P.expm_orthogonal(P.henaff(key, n, jnp.float64)),
         "unitary": lambda: P.expm_unitary(P.henaff(key, n, jnp.float64)),
         "householder": lambda: P.householder_dense(P.householder_henaff(key, n, jnp.float64))
         }[which]()
    np.testing.assert_allclose(_angles(w), np.sort(np.r_[theta, -theta]), atol=1e-10)


def test_cayley_init_eigenvalue_angles():
    n, key = 12, jax.random.key(12)
    t = np.asarray(P.block_angles(key, n, 0.0, math.pi / 2, jnp.float64))
    assert t.min() >= 0 and t.max() <= math.pi / 2
    w = P.cayley(P.cayley_init(key, n, jnp.float64), jnp.ones(n, jnp.float64))
    np.testing.assert_allclose(_angles(w), np.sort(np.r_[t, -t]), atol=1e-10)


@pytest.mark.parametrize("n", [7, 8])
def test_haar_inits_reproduce_the_drawn_matrix(n):
    key, t = jax.random.key(13), jnp.float64
    q = P.haar_orthogonal(key, n, t, det=1.0)
    assert abs(np.linalg.det(q) - 1) < 1e-12
    np.testing.assert_allclose(P.expm_orthogonal(P.haar_skew(key, n, t)), q, atol=1e-9)
    d = P.scaling_diagonal(n, 3, t)
    q = P.haar_orthogonal(key, n, t, det=-1.0)
    np.testing.assert_allclose(P.cayley(P.cayley_haar(key, n, d, t), d), q, atol=1e-9)
    u = P.haar_unitary(key, n, t)
    np.testing.assert_allclose(P.expm_unitary(P.haar_unitary_skew(key, n, t)), u, atol=1e-9)


def test_haar_orthogonal_is_not_biased():
    """Mean of Haar matrices is 0 and E[W_ij^2] = 1/n (entries of a uniform column)."""
    n = 6
    ws = jax.vmap(lambda k: P.haar_orthogonal(k, n, jnp.float64))(
        jax.random.split(jax.random.key(0), 4000))
    assert np.abs(np.asarray(ws).mean(0)).max() < 0.05
    np.testing.assert_allclose(np.asarray(ws ** 2).mean(0), 1 / n, atol=0.02)


def test_identity_inits():
    n = 6
    np.testing.assert_allclose(P.householder_dense(P.householder_identity(4, n, jnp.float64)),
                               np.eye(n), atol=1e-15)
    d = P.scaling_diagonal(n, 2, jnp.float64)
    np.testing.assert_array_equal(d, [-1, -1, 1, 1, 1, 1])
    np.testing.assert_allclose(P.cayley(jnp.zeros((n, n)), d), np.diag(d))


# ----------------------------------------------------------------- dynamic trivialization
def test_retrivialize_keeps_the_function():
    n, t = 8, jnp.float64
    params = {"cell": {"skew": P.henaff(jax.random.key(0), n, t),
                       "base": P.haar_orthogonal(jax.random.key(1), n, t), "V": jnp.ones(3)},
              "other": [jnp.zeros(2)]}
    before = P.expm_orthogonal(params["cell"]["skew"], params["cell"]["base"])
    new = P.retrivialize(params)
    np.testing.assert_array_equal(new["cell"]["skew"], 0)
    np.testing.assert_allclose(P.expm_orthogonal(new["cell"]["skew"], new["cell"]["base"]),
                               before, atol=1e-13)
    np.testing.assert_array_equal(new["cell"]["V"], params["cell"]["V"])
    assert jax.tree.structure(new) == jax.tree.structure(params)
    assert _defect(new["cell"]["base"]) < 1e-13


# ----------------------------------------------------------------- modReLU
def test_modrelu_worked_example():
    out = P.modrelu(jnp.array([3 + 4j, 0.1 + 0j]), jnp.array([-1.0, -0.5]))
    np.testing.assert_allclose(out, [2.4 + 3.2j, 0.0], atol=1e-15)
    out = P.modrelu(jnp.array([-3.0, 0.2, 2.0]), jnp.array([1.0, -0.5, -0.5]))
    np.testing.assert_allclose(out, [-4.0, 0.0, 1.5])


def test_modrelu_gradient_safe_at_zero_and_correct_elsewhere():
    b = jnp.array(0.5)
    for f in (lambda x, y: jnp.abs(P.modrelu(jax.lax.complex(x, y), b)) ** 2,
              lambda x, y: P.modrelu(x, b) + 0 * y):
        gx, gy = jax.grad(f, argnums=(0, 1))(0.0, 0.0)
        assert np.isfinite(gx) and np.isfinite(gy)
    z = jnp.array([0.3 - 0.4j, -1.0 + 2.0j])
    bb = jnp.array([0.2, -0.7])
    check_grads(lambda x, y, bb: _real_out(P.modrelu)(jax.lax.complex(x, y), bb),
                (z.real, z.imag, bb), order=1, modes=("rev",))
    check_grads(P.modrelu, (jnp.array([0.3, -2.0]), bb), order=1, modes=("rev",))


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match="A must be a square"):
        P.cayley(jnp.zeros((3, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match="rho"):
        P.scaling_diagonal(4, 5)
    with pytest.raises(ValueError, match="m must be even"):
        P.householder_identity(3, 4)
    with pytest.raises(ValueError, match="n must be even"):
        P.householder_henaff(jax.random.key(0), 5)
    with pytest.raises(ValueError, match="u must be"):
        P.householder_apply(jnp.ones(3), jnp.ones(3))
