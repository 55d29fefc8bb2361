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

from rnnjax.cells.parametrize.init import (
    block_angles,
    cayley_haar,
    cayley_init,
    haar_orthogonal,
    haar_skew,
    haar_unitary,
    haar_unitary_skew,
    henaff,
    householder_henaff,
    householder_identity,
    householder_random,
)
from rnnjax.cells.parametrize.maps import (
    cayley,
    complex_dtype,
    expm_orthogonal,
    expm_unitary,
    householder_apply,
    householder_dense,
    householder_reflect,
    householder_unit,
    retrivialize,
    scaling_diagonal,
    skew,
    skew_hermitian,
)
from rnnjax.cells.parametrize.unitary import (
    eunn_apply,
    eunn_apply_factors,
    eunn_coefficients,
    eunn_dense,
    eunn_pairs,
    eunn_permutations,
    modrelu,
    urnn_apply,
    urnn_apply_factors,
    urnn_dense,
    urnn_factors,
    urnn_init,
    urnn_permutation,
)

__all__ = [
    "block_angles", "cayley", "cayley_haar", "cayley_init", "complex_dtype", "eunn_apply",
    "eunn_apply_factors", "eunn_coefficients", "eunn_dense", "eunn_pairs",
    "eunn_permutations", "expm_orthogonal", "expm_unitary", "haar_orthogonal", "haar_skew",
    "haar_unitary", "haar_unitary_skew", "henaff", "householder_apply", "householder_dense",
    "householder_henaff", "householder_identity", "householder_random",
    "householder_reflect", "householder_unit", "modrelu", "retrivialize",
    "scaling_diagonal", "skew", "skew_hermitian", "urnn_apply", "urnn_apply_factors",
    "urnn_dense", "urnn_factors", "urnn_init", "urnn_permutation",
]
