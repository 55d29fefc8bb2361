"""Weights in and out of PyTorch (``nn.RNN``/``nn.LSTM``/``nn.GRU``) and Flax
(``LSTMCell``/``GRUCell``)."""

from rnnjax.interop.weights import (
    MODES,
    carry_from_torch,
    carry_to_torch,
    from_flax_gru,
    from_flax_lstm,
    from_torch,
    from_torch_module,
    to_flax_gru,
    to_flax_lstm,
    to_torch,
    torch_layer,
)

__all__ = [
    "carry_from_torch",
    "carry_to_torch",
    "from_flax_gru",
    "from_flax_lstm",
    "from_torch",
    "from_torch_module",
    "MODES",
    "to_flax_gru",
    "to_flax_lstm",
    "to_torch",
    "torch_layer",
]
