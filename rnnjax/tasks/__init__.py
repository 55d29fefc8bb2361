"""Tasks: each a pure function of a PRNG key returning a batch, with its loss, metrics and
a stated baseline (see :class:`rnnjax.tasks.Task`).

``TASKS`` maps the names used by ``rnnjax train --task`` to factories; :func:`make`
builds one by name from the runner's options.  Data-set tasks (digits, pdigits,
mnist1d, mnist1d_full, smnist, pmnist) carry fixed splits and train by epochs; the char
LM is stateful (:mod:`rnnjax.tasks.stateful`).
"""

from rnnjax.core.checks import check_choice
from rnnjax.tasks.adding import adding_batch, adding_task
from rnnjax.tasks.base import (
    CreditSteps,
    Splits,
    Task,
    accuracy,
    arrays_sha256,
    cross_entropy,
    dataset_task,
    epoch_batch,
    split_metrics,
    steps_per_epoch,
)
from rnnjax.tasks.charlm import charlm_task, sample
from rnnjax.tasks.copy import baseline as copy_baseline
from rnnjax.tasks.copy import copy_batch, copy_task
from rnnjax.tasks.digits import digits_task, load_digits
from rnnjax.tasks.memory import induction_task, mqar_task, selective_copy_task
from rnnjax.tasks.mnist import load_mnist, mnist_task
from rnnjax.tasks.mnist1d import load_mnist1d, mnist1d_full_task, mnist1d_task
from rnnjax.tasks.plugin import is_plugin, load_factory, plugin_task
from rnnjax.tasks.state_tracking import cycle_task, modadd_task, parity_task, permutation_task
from rnnjax.tasks.stateful import evaluate_bpc

TASKS = {
    "copy": lambda T, data=None, variant="arjovsky", **_: copy_task(T, variant),
    "adding": lambda T, data=None, **_: adding_task(T),
    "smnist": lambda T=None, data=None, permutation_seed=0, **_: mnist_task(data, False),
    "pmnist": lambda T=None, data=None, permutation_seed=0, permutation=None, **_:
        mnist_task(data, True, permutation_seed, perm=permutation),
    "charlm": lambda T, data=None, **_: charlm_task(data, seq_len=T),
    "digits": lambda T=None, data=None, **_: digits_task(False),
    "pdigits": lambda T=None, data=None, permutation_seed=0, permutation=None, **_:
        digits_task(True, permutation_seed, perm=permutation),
    "mnist1d": lambda T=None, data=None, **_: mnist1d_task(),
    "mnist1d_full": lambda T=None, data=None, **_: mnist1d_full_task(),
    # the memory lab's token tasks (rnnjax.tasks.memory, rnnjax.tasks.state_tracking):
    # T is the whole sequence length; their other sizes are options of the factories
    "selective_copy": lambda T, data=None, **_: selective_copy_task(T),
    "mqar": lambda T, data=None, **_: mqar_task(T),
    "induction": lambda T, data=None, **_: induction_task(T),
    "parity": lambda T, data=None, **_: parity_task(T),
    "modadd": lambda T, data=None, **_: modadd_task(T),
    "s3": lambda T, data=None, **_: permutation_task(T, 3),
    "s5": lambda T, data=None, **_: permutation_task(T, 5),
    "cycle": lambda T, data=None, **_: cycle_task(T),
}


def make(name: str, **options) -> Task:
    """Build the task called ``name`` (a key of ``TASKS``).  Options: ``T`` (delay for
    copy, length for adding, window for charlm; ignored by MNIST), ``data`` (path),
    ``variant`` (copy), ``permutation_seed`` (pmnist, pdigits), ``permutation`` (a saved
    pixel order for pdigits, from ``config.json``).  ``"module:factory"`` builds a
    task of one's own (:mod:`rnnjax.tasks.plugin`)."""
    if is_plugin(name):
        return plugin_task(name, **options)
    check_choice("task", name, TASKS)
    return TASKS[name](**options)


__all__ = ["CreditSteps", "Splits", "TASKS", "Task", "accuracy", "adding_batch", "adding_task",
           "arrays_sha256", "charlm_task", "copy_baseline", "copy_batch", "copy_task",
           "cross_entropy", "cycle_task", "dataset_task", "digits_task", "induction_task",
           "epoch_batch", "evaluate_bpc", "is_plugin", "load_digits", "load_factory",
           "load_mnist", "load_mnist1d", "make", "mnist1d_full_task", "mnist1d_task",
           "mnist_task", "modadd_task", "mqar_task", "parity_task", "permutation_task",
           "plugin_task", "selective_copy_task",
           "sample", "split_metrics",
           "steps_per_epoch"]
