r"""Character-level text generation: train an LSTM/GRU on a text file, then sample.

Model (the cell + linear readout of the training runner, params
``{"cell": ..., "readout": {"W": (V, H), "b": (V,)}}``), one-hot input ``x_t``::

    h_t = cell(h_{t-1}, x_t)        logits_t = W h_t + b        p(c_{t+1}) = softmax(logits_t)

Data, as the runner's char-LM task: the vocabulary is the sorted set of characters of
the file; the last ``holdout`` fraction of the text is held out; a training batch is
``batch`` windows of ``seq_len + 1`` characters at uniform positions.  Loss: mean
cross-entropy (nats); bits per character ``bpc = loss / ln 2``.  Baseline: the unigram
model of the training text (no context), scored on the held-out text in bits.

Sampling (:func:`sample`): the prompt is read to set the state; then each character is
``argmax(logits)`` when ``temperature == 0`` and is drawn from
``softmax(logits / temperature)`` otherwise, with one PRNG key per step split from
``key`` (so a sample is a pure function of the key).  As ``temperature -> 0`` the draw
tends to the argmax (greedy decoding), which the tests check at ``1e-6``.

Checkpoints: ``out/checkpoints`` holds verified orbax checkpoints of the params
(:func:`rnnjax.training.checkpointing.save_params`, the latest ``keep``), with
``out/generate_config.json`` (cell, hidden, vocabulary) beside them;
``restore=out`` skips training and samples from the latest checkpoint.  A run of the
training runner (``rnnjax train --task charlm``) can be sampled with ``run=DIR`` (it
reads ``DIR/config.json`` and the runner's checkpoints through
``rnnjax.load_params``).
"""

from __future__ import annotations

import json
import math
import os
import zlib

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax import cells
from rnnjax.apps import _common
from rnnjax.core.checks import (
    check_choice,
    check_file,
    check_fraction,
    check_nonneg_float,
    check_positive_int,
)
from rnnjax.io.outputs import atomic_open, writes_out
from rnnjax.layers.readout import cell_with_readout
from rnnjax.plots import figures
from rnnjax.tasks.charlm import Vocab, load_text, sample, split_text, vocab_of
from rnnjax.training import checkpointing, runner
from rnnjax.training.update import fit

DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), "data", "tiny_text.txt")
CELLS = ("lstm", "gru", "elman")


class CharModel:
    """Cell + linear readout over one-hot characters: the runner's
    :func:`rnnjax.layers.readout.cell_with_readout` (``init``, ``apply``, ``scan_prefix``,
    ``step_logits``, ``cell``) with the vocabulary size ``V``."""

    def __init__(self, cell_name: str, hidden: int, vocab_size: int):
        check_choice("cell", cell_name, CELLS)
        check_positive_int("hidden", hidden)
        self.cell = cells.make(cell_name, hidden)
        self.V = vocab_size
        model = cell_with_readout(self.cell, vocab_size, vocab_size, "all")
        self.init, self.apply = model.init, model.apply
        self.scan_prefix, self.step_logits = model.scan_prefix, model.step_logits


def _xent(logits, ids):
    lp = jax.nn.log_softmax(logits)
    return -jnp.take_along_axis(lp, ids[..., None], -1)[..., 0]


def heldout_bpc(model, params, eval_ids):
    """Bits per character of the held-out text read as one sequence (state carried)."""
    x = jax.nn.one_hot(eval_ids[:-1], model.V, dtype=jnp.float32)
    lg = model.apply(params, x[None])[0]
    return float(jnp.mean(_xent(lg, jnp.asarray(eval_ids[1:]))) / math.log(2))


def unigram_bpc(train_ids, eval_ids, V):
    """Cross-entropy (bits) of the held-out text under the add-one-smoothed unigram
    distribution of the training text."""
    counts = np.bincount(train_ids, minlength=V) + 1.0
    p = counts / counts.sum()
    return float(-np.mean(np.log2(p[eval_ids[1:]])))


def train(model, train_ids, *, seq_len=64, batch=32, steps=500, lr=3e-3, seed=0,
          log_every=0, print_fn=print):
    """Adam on the mean cross-entropy of random windows; returns ``(params, losses)``."""
    check_positive_int("seq_len", seq_len)
    arr = jnp.asarray(train_ids)

    def batch_fn(k):
        start = jax.random.randint(k, (batch,), 0, arr.shape[0] - seq_len)
        win = jax.vmap(lambda s: jax.lax.dynamic_slice(arr, (s,), (seq_len + 1,)))(start)
        return win[:, :-1], win[:, 1:]

    def loss(p, b):
        xs = jax.nn.one_hot(b[0], model.V, dtype=jnp.float32)
        return jnp.mean(_xent(model.apply(p, xs), b[1]))

    params = model.init(jax.random.key(seed))
    return fit(loss, params, batch_fn, steps=steps, lr=lr,
                       key=jax.random.key(seed + 1), log_every=log_every, print_fn=print_fn,
                       name="bits per character", scale=1 / math.log(2))


# --- checkpoints ------------------------------------------------------------------------

def save_checkpoint(out, step, params, config, keep=3):
    """Save ``params`` as checkpoint ``step`` of ``out/checkpoints``
    (:func:`rnnjax.training.checkpointing.save_params`) and ``config`` (cell, hidden, vocabulary)
    as ``out/generate_config.json``."""
    _common.write_json(os.path.join(out, "generate_config.json"), config)
    checkpointing.save_params(out, step, params, keep=keep)


def load_checkpoint(out, step=None):
    """``(model, params, vocab, config)`` from a folder written by :func:`save_checkpoint`
    (the newest verified checkpoint when ``step`` is None)."""
    path = os.path.join(os.fspath(out), "generate_config.json")
    check_file("restore (its generate_config.json)", path)
    with open(path) as f:
        config = json.load(f)
    vocab = Vocab(config["vocab"])
    model = CharModel(config["cell"], config["hidden"], len(vocab))
    like = jax.eval_shape(model.init, jax.random.key(0))
    return model, checkpointing.restore_params(out, like, step), vocab, config


def load_runner_run(run_dir, seed_index=0):
    """``(model, params, vocab)`` of a char-LM run of the training runner: reads
    ``run_dir/config.json`` (task charlm, its data file or the shipped text, cell,
    hidden) and the runner's
    checkpoints via :func:`rnnjax.load_params` (params stacked over seeds: entry
    ``seed_index`` is used)."""
    check_file("run (its config.json)", os.path.join(os.fspath(run_dir), "config.json"))
    config = runner.Config.load(run_dir)
    if config.task != "charlm":
        raise ValueError(f"run must be a charlm run, got task {config.task!r}")
    exp = runner.build(config)  # the text of config.data (the shipped one when None)
    vocab, model = vocab_of(exp.task), exp.model
    params = jax.tree.map(lambda a: a[seed_index], runner.load_params(run_dir))
    return model, params, vocab


# --- the pipeline -----------------------------------------------------------------------

def sample_key(seed: int, prompt: str, i: int):
    """The key of the ``i``-th sample: from ``seed`` and the prompt (its CRC-32), so
    samples vary with ``--seed`` and with ``--prompt`` and repeat for both fixed."""
    key = jax.random.fold_in(jax.random.key(seed), zlib.crc32(prompt.encode("utf-8")))
    return jax.random.fold_in(key, i)


def _check_prompt(prompt, vocab, source):
    """Raise ``ValueError`` (before any training) for prompt characters that the
    vocabulary of ``source`` lacks."""
    unknown = sorted(set(prompt) - set(vocab.chars))
    if unknown:
        raise ValueError(f"prompt has characters {unknown} that are not in the vocabulary "
                         f"of {os.fspath(source)!r} ({len(vocab.chars)} characters)")


@writes_out(reads=("restore", "run_dir", "data"))
def run_generate(out, *, data=DATA, cell_name="lstm", hidden=128, seq_len=64, batch=32,
                 steps=800, lr=3e-3, holdout=0.1, prompt="The ", length=300,
                 temperatures=(0.0, 0.5, 1.0), seed=0, restore=None, run_dir=None,
                 print_fn=print):
    """The ``rnnjax generate`` pipeline.  Trains (unless ``restore`` or ``run_dir``),
    checkpoints, reports bits per character against the unigram baseline, and writes
    ``samples.txt`` (one sample per temperature), ``generate.json`` and, after training,
    ``generate.png`` (training loss in bits per character)."""
    _common.check_fit(steps=steps, batch=batch, lr=lr)
    out = _common.out_dir(out)
    for t in temperatures:
        check_nonneg_float("temperature", t)
    summary = {"prompt": prompt, "length": length, "seed": seed}
    if restore is not None or run_dir is not None:
        if restore is not None:
            model, params, vocab, _ = load_checkpoint(restore)
        else:
            model, params, vocab = load_runner_run(run_dir)
        summary["source"] = os.fspath(restore if restore is not None else run_dir)
        print_fn(f"loaded a model from {summary['source']}")
    else:
        check_positive_int("steps", steps)
        check_fraction("holdout", holdout)
        text = load_text(data)
        vocab = Vocab.of(text)
        _check_prompt(prompt, vocab, data)
        train_ids, eval_ids = split_text(vocab.encode(text), holdout, seq_len)
        model = CharModel(cell_name, hidden, len(vocab))
        params, losses = train(model, train_ids, seq_len=seq_len, batch=batch, steps=steps,
                               lr=lr, seed=seed)
        bpc = heldout_bpc(model, params, eval_ids)
        base = unigram_bpc(train_ids, eval_ids, len(vocab))
        save_checkpoint(out, steps, params, {"cell": cell_name, "hidden": hidden,
                                             "vocab": vocab.chars, "data": os.fspath(data)})
        summary.update({"data": os.fspath(data), "cell": cell_name, "hidden": hidden,
                        "steps": steps, "characters": len(text), "vocab": len(vocab),
                        "heldout_bpc": bpc, "unigram_bpc": base,
                        "train_bpc_last": losses[-1] / math.log(2)})
        fig = figures.figure(figsize=(6, 3.5))
        ax = fig.add_subplot()
        ax.plot(np.asarray(losses) / math.log(2), label="training (batch)")
        ax.axhline(bpc, color="C1", label=f"held-out {bpc:.2f}")
        ax.axhline(base, color="C7", linestyle="--", label=f"unigram {base:.2f}")
        ax.set(xlabel="step", ylabel="bits per character",
               title=f"{cell_name} H={hidden} on {os.path.basename(os.fspath(data))}")
        ax.legend()
        figures.save(fig, os.path.join(out, "generate.png"))
        print_fn(f"held-out bits per character {bpc:.3f} (unigram baseline {base:.3f})")
    samples = {}
    for i, t in enumerate(temperatures):
        samples[str(t)] = sample(model, params, vocab, prompt, length,
                                 key=sample_key(seed, prompt, i),
                                 temperature=t)
    summary["samples"] = samples
    with atomic_open(os.path.join(out, "samples.txt"), "w", encoding="utf-8") as f:
        for t, s in samples.items():
            f.write(f"--- temperature {t} ---\n{prompt}{s}\n\n")
    _common.write_json(os.path.join(out, "generate.json"), summary)
    for t, s in samples.items():
        print_fn(f"[T={t}] {prompt}{s[:120]!r}")
    print_fn(f"wrote {os.path.join(out, 'samples.txt')}")
    return summary


__all__ = ["CELLS", "CharModel", "DATA", "heldout_bpc", "load_checkpoint", "sample_key",
           "load_runner_run", "run_generate", "save_checkpoint", "train", "unigram_bpc"]
