"""Published results beside the lab's rows (:mod:`rnnjax.experiments.lab_board`): for a
task and the cells it concerns, what a paper reports (``solves`` or ``fails``), where
(paper, table or figure) and how its protocol differs from the lab's (small models,
a few hundred steps, one layer, lengths 16-32 for training and up to 8x for testing).

A claim is a qualitative outcome as the paper states it; the lab's row is compared
with it by :func:`agreement` (solved: mean accuracy at the training length >= 0.9)."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["PUBLISHED", "Published", "agreement", "published_for"]

SOLVED = 0.9  # mean accuracy over seeds at the training length that counts as solved


class Published(NamedTuple):
    task: str            # a task name of rnnjax.tasks.TASKS
    cells: tuple         # the lab cell labels the claim concerns
    outcome: str         # "solves" or "fails"
    claim: str           # the claim in one line (with the paper's number where given)
    source: str          # paper, table or figure
    protocol: str        # how the paper's protocol differs from the lab's


_XLSTM = ("Beck et al. 2024, xLSTM (NeurIPS), Fig. 4 (formal languages, Chomsky "
          "hierarchy tasks of Deletang et al.)")
_XLSTM_P = ("trained on lengths 3-40, tested on 40-256; multi-layer blocks with "
            "up-projections; the lab: one cell of width 32, 400 steps")
_GRAZZI = ("Grazzi et al. 2025, Unlocking state-tracking in linear RNNs through negative "
           "eigenvalues (ICLR), Sec. 5.1 (parity and modular arithmetic)")
_GRAZZI_P = ("xLSTM's formal-language protocol (lengths 3-40, test 40-256), multi-layer "
             "Mamba/DeltaNet blocks; the lab: one cell, training length 16")
_DELETANG = ("Deletang et al. 2023, Neural networks and the Chomsky hierarchy (ICLR), "
             "Table 2")
_DELETANG_P = ("trained on lengths up to 40, tested on 41-500, final-state output; "
               "the lab: running output, trained at 16, tested up to 128")

PUBLISHED = (
    Published("parity", ("mamba", "deltanet"), "fails",
              "diagonal / Householder transitions with eigenvalues in [0, 1] cannot "
              "represent parity", _GRAZZI, _GRAZZI_P),
    Published("parity", ("mamba@negative_eigenvalues=true",
                         "deltanet@negative_eigenvalues=true"), "solves",
              "extending the eigenvalue range to [-1, 1] solves parity", _GRAZZI, _GRAZZI_P),
    Published("modadd", ("mamba", "deltanet"), "fails",
              "eigenvalues in [0, 1]: modular arithmetic not learnt", _GRAZZI, _GRAZZI_P),
    Published("modadd", ("deltanet@negative_eigenvalues=true",), "solves",
              "eigenvalues in [-1, 1] improve modular arithmetic (DeltaNet best)", _GRAZZI,
              _GRAZZI_P),
    Published("parity", ("slstm", "lstm"), "solves",
              "sLSTM (and LSTM) solve parity; mLSTM alone and Mamba do not", _XLSTM,
              _XLSTM_P),
    Published("parity", ("mlstm",), "fails", "mLSTM alone (no memory mixing) fails parity",
              _XLSTM, _XLSTM_P),
    Published("parity", ("elman", "lstm"), "solves",
              "RNN and LSTM solve parity check (100% at test lengths)", _DELETANG,
              _DELETANG_P),
    Published("cycle", ("elman", "lstm"), "solves",
              "RNN and LSTM solve cycle navigation", _DELETANG, _DELETANG_P),
    Published("modadd", ("elman", "lstm"), "solves",
              "RNN and LSTM solve modular arithmetic (without brackets)", _DELETANG,
              _DELETANG_P),
    Published("s5", ("lstm", "elman"), "solves",
              "an RNN tracks the S5 word problem with one layer at every length",
              "Merrill, Petty & Sabharwal 2024, The illusion of state in state-space "
              "models (ICML), Fig. 4",
              "S5/A5 over long sequences with a target per prefix; the lab: length 16, 400 "
              "steps"),
    Published("s5", ("mamba",), "fails",
              "Mamba (and transformers) need depth growing with length for S5",
              "Merrill, Petty & Sabharwal 2024 (ICML), Fig. 4",
              "multi-layer models; the lab: one cell, length 16"),
    Published("selective_copy", ("mamba",), "solves",
              "Mamba with the selective S6 layer: 99.8% (S4 without selection: 18.3%)",
              "Gu & Dao 2023, Mamba, Table 1",
              "length 4096, 16 tokens, 2-layer models; the lab: length 32, 4 tokens"),
    Published("induction", ("mamba",), "solves",
              "Mamba solves induction heads and extrapolates to 4000x the training length",
              "Gu & Dao 2023, Mamba, Table 2",
              "trained at 256 with 2-layer models; the lab: length 32, one cell"),
    Published("mqar", ("gla", "mamba", "deltanet"), "solves",
              "input-dependent (gated) recurrences solve MQAR when the state is large "
              "enough; accuracy falls as key-value pairs outgrow the state",
              "Arora et al. 2023, Zoology, Fig. 2 (and Sec. 4)",
              "sequence length 64-512, vocab 8192, 2-layer models; the lab: length 32, "
              "vocab 32, 4 pairs"),
    Published("copy", ("eunn", "urnn", "exprnn"), "solves",
              "unitary RNNs reach zero loss at delays T = 100..500; LSTM stays at the "
              "memoryless baseline for T >= 200",
              "Arjovsky, Shah & Bengio 2016, uRNN (ICML), Fig. 1",
              "hidden 128 (uRNN), thousands of steps; the lab: hidden 32"),
)


def published_for(task: str, cell: str) -> list:
    """The :data:`PUBLISHED` entries of ``task`` that concern ``cell`` (a lab label)."""
    return [p for p in PUBLISHED if p.task == task and cell in p.cells]


def agreement(p: Published, accuracy) -> str | None:
    """``"agrees"`` / ``"disagrees"``: whether a mean accuracy at the training length
    (None: not measured) matches ``p.outcome`` by :data:`SOLVED`."""
    if accuracy is None:
        return None
    solved = accuracy >= SOLVED
    return "agrees" if solved == (p.outcome == "solves") else "disagrees"
