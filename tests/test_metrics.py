"""Metric records: names that say where they are measured, the console line, bits per
character, and reading records written under the old names."""

import json
import math
import os

import numpy as np

from rnnjax.training.metrics import (
    format_loss,
    format_mean_std,
    format_record,
    load_history,
    make_record,
    write_metrics,
)


def test_console_line_states_ratio_and_baseline():
    assert format_loss(0.3611, 0.347, "CE") == "CE 0.3611 (1.04 x baseline 0.347)"
    rec = make_record(400, {"train_loss": [0.37], "train_grad_norm": [0.1],
                            "eval_loss": [0.3611], "eval_accuracy": [0.25]},
                      0.347, 12.0, 3.0, 1)
    line = format_record(rec, "copy")
    assert "train CE 0.3700" in line
    assert "eval CE 0.3611 (1.04 x baseline 0.347)" in line and "acc 0.250" in line


def test_char_lm_prints_bits_per_character():
    nats = 1.2
    rec = make_record(10, {"train_loss": [nats], "train_grad_norm": [1.0],
                           "eval_loss": [nats], "eval_bpc": [nats / math.log(2)]},
                      2.0, 1.0, 1.0, 1)
    np.testing.assert_allclose(rec["train_bpc"], nats / math.log(2))
    line = format_record(rec, "charlm")
    b = nats / math.log(2)
    assert f"train bpc {b:.4f}" in line
    assert f"eval bpc {b:.4f} ({nats / 2.0:.2f} x baseline {2.0 / math.log(2):.3f})" in line


def test_multi_seed_records_and_mean_std():
    rec = make_record(5, {"train_loss": [1.0, 3.0], "eval_loss": [2.0, 4.0]}, None, 1.0,
                      1.0, 2)
    assert rec["train_loss"] == 2.0 and rec["train_loss_std"] == 1.0
    assert rec["seeds"]["eval_loss"] == [2.0, 4.0]
    assert format_mean_std([2.0, 4.0]) == "3.0000 ± 1.0000"
    assert format_mean_std([0.25], digits=2) == "0.25"


def test_old_names_are_read_under_the_new_ones(tmp_path):
    old = {"step": 50, "loss": 0.5, "loss_std": 0.0, "grad_norm": 2.0, "grad_norm_std": 0.1,
           "eval_loss": 0.4, "grad_norm_cell": 1.5, "grad_norm_cell_std": 0.2,
           "seeds": {"loss": [0.5, 0.5], "grad_norm_readout": [1.0, 2.0]}}
    (tmp_path / "metrics.jsonl").write_text(json.dumps(old) + "\n")
    (rec,) = load_history(str(tmp_path))
    assert rec == {"step": 50, "train_loss": 0.5, "train_loss_std": 0.0,
                   "train_grad_norm": 2.0, "train_grad_norm_std": 0.1, "eval_loss": 0.4,
                   "eval_grad_norm_cell": 1.5, "eval_grad_norm_cell_std": 0.2,
                   "seeds": {"train_loss": [0.5, 0.5], "eval_grad_norm_readout": [1.0, 2.0]}}
    write_metrics(str(tmp_path), [rec])  # new names round-trip unchanged
    assert load_history(str(tmp_path)) == [rec]


def _events(folder):
    """(tag, step, value) of the scalar summaries in TensorBoard event files (TFRecord:
    length u64, crc u32, data, crc u32)."""
    import glob
    import struct

    from tensorboardX.proto import event_pb2
    out = []
    for path in glob.glob(os.path.join(folder, "events.out.tfevents.*")):
        data = open(path, "rb").read()
        i = 0
        while i < len(data):
            (n,) = struct.unpack("<Q", data[i:i + 8])
            ev = event_pb2.Event.FromString(data[i + 12:i + 12 + n])
            i += 12 + n + 4
            for v in ev.summary.value:
                out.append((v.tag, ev.step, v.simple_value))
    return out


def test_tensorboard_event_files(tmp_path):
    # tensorboardX is in the dev extra, so this runs wherever the tests do
    from rnnjax.training.runner import Config, train
    out = str(tmp_path / "run")
    r = train(Config(task="adding", cell="elman", T=6, hidden=4, batch=4, eval_batch=4,
                     steps=4, log_every=2, out=out, tensorboard=True), progress=False)
    ev = _events(os.path.join(out, "tensorboard"))
    for rec in r.history:
        for tag in ("train_loss", "eval_loss", "train_grad_norm"):
            (value,) = [v for t, s, v in ev if t == tag and s == rec["step"]]
            np.testing.assert_allclose(value, rec[tag], rtol=1e-6)
