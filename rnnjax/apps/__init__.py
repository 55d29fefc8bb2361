"""The classic sequence applications, one module each, each behind an ``rnnjax``
subcommand:

* :mod:`rnnjax.apps.colors`   autoregressive colour palettes (``rnnjax colors``)
* :mod:`rnnjax.apps.forecast` time-series forecasting against naive and AR baselines
* :mod:`rnnjax.apps.classify` many-to-one sequence classification with masking
* :mod:`rnnjax.apps.seq2seq`  encoder-decoder with additive or dot-product attention
* :mod:`rnnjax.apps.generate` character-level text generation with temperature

Modules are imported on use (``from rnnjax.apps import colors``) so that importing
:mod:`rnnjax` stays light.
"""

__all__ = ["classify", "colors", "forecast", "generate", "seq2seq"]
