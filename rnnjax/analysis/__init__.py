"""Gradient flow and credit assignment: hidden-state gradient norms, credit
profiles, Jacobian norms and products, Lyapunov spectra, orthogonality errors."""

from rnnjax.analysis._common import (
    carry_readout,
)
from rnnjax.analysis.credit import (
    CreditProfile,
    carry_fields,
    credit_arrays,
    credit_assignment,
    credit_metrics,
    credit_profile,
    credit_ratio,
    credit_record,
    jacobian_norm,
    log_jacobian_norm,
)
from rnnjax.analysis.gradients import (
    grad_norms_by_layer,
    hidden_grad_norms,
    jacobian_product_svals,
    scaled_norm,
    state_trajectory,
)
from rnnjax.analysis.spectra import (
    lyapunov_spectrum,
    orthogonality_error,
    recurrent_spectrum,
)
from rnnjax.io.paramfile import load_params_npz, save_params_npz

__all__ = [
    "carry_fields",
    "carry_readout",
    "credit_arrays",
    "credit_assignment",
    "credit_metrics",
    "credit_profile",
    "credit_ratio",
    "credit_record",
    "CreditProfile",
    "grad_norms_by_layer",
    "hidden_grad_norms",
    "jacobian_norm",
    "jacobian_product_svals",
    "load_params_npz",
    "log_jacobian_norm",
    "lyapunov_spectrum",
    "orthogonality_error",
    "recurrent_spectrum",
    "save_params_npz",
    "scaled_norm",
    "state_trajectory",
]
