"""rnnjax classify: tokenising, masking (padding changes nothing), beats majority class."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rnnjax import cli
from rnnjax.apps import classify


def test_tokenize_vocab_encode():
    assert classify.tokenize("Great film, didn't LIKE it!") == \
        ["great", "film", ",", "didn't", "like", "it", "!"]
    vocab = classify.build_vocab(["a b b", "b c"])
    assert vocab == {"b": 2, "a": 3, "c": 4}
    ids, lengths = classify.encode(["b a", "c z b"], vocab)
    np.testing.assert_array_equal(ids, [[2, 3, 0], [4, classify.UNK, 2]])
    np.testing.assert_array_equal(lengths, [2, 3])


def test_shipped_file_reads():
    texts, labels = classify.read_labelled(classify.DATA)
    assert len(texts) == len(labels) >= 100 and set(labels) == {"positive", "negative"}


@pytest.mark.parametrize("bidir", [False, True])
def test_padding_does_not_change_logits(bidir):
    layer = classify.make_model("lstm", 8, bidir)
    p = jax.tree.map(lambda a: a.astype(jnp.float64),
                     classify.init(jax.random.key(0), layer, 10, 3, 6))
    ids = np.array([[2, 5, 7, 0, 0], [3, 4, 9, 8, 6]], np.int32)
    lengths = np.array([3, 5], np.int32)
    lg = classify.logits(layer, p, ids, lengths)
    junk = ids.copy()
    junk[0, 3:] = [9, 9]  # whatever sits past the length is ignored
    np.testing.assert_allclose(classify.logits(layer, p, junk, lengths), lg, rtol=1e-12)
    alone = classify.logits(layer, p, ids[:1, :3], lengths[:1])
    np.testing.assert_allclose(alone[0], lg[0], rtol=1e-12)
    # bidirectional: the backward state is the backward cell run over the reversed tokens
    if bidir:
        cell = classify.cells.make("lstm", 8)
        rev = p["embed"][ids[0, :3][::-1]]
        _, cb = classify.unidirectional(cell).apply(p["rnn"]["bwd"], rev)
        _, cf = classify.unidirectional(cell).apply(p["rnn"]["fwd"], p["embed"][ids[0, :3]])
        z = jnp.concatenate([cf.h, cb.h])
        np.testing.assert_allclose(lg[0], p["out"]["W"] @ z + p["out"]["b"], rtol=1e-12)


def test_bad_data(tmp_path):
    f = tmp_path / "d.tsv"
    f.write_text("pos\tgood\npos\tfine\n")
    with pytest.raises(ValueError, match="two classes"):
        classify.read_labelled(f)
    f.write_text("pos good\n")
    with pytest.raises(ValueError, match="label<TAB>text"):
        classify.read_labelled(f)


def test_cli_beats_majority_class(tmp_path, capsys):
    rc = cli.main(["classify", "--out", str(tmp_path), "--steps", "120", "--hidden", "16",
                   "--embed", "16", "--bidirectional"])
    assert rc == 0
    s = json.loads((tmp_path / "classify.json").read_text())
    acc = s["accuracy"]
    assert acc["test"] > acc["majority class (test)"] + 0.15, acc
    assert s["train"] + s["test"] == 180 and s["bidirectional"]
    assert (tmp_path / "classify.png").stat().st_size > 1000
    assert "| majority class (test) |" in (tmp_path / "classify.md").read_text()
    assert "test" in capsys.readouterr().out
    assert cli.main(["classify", "--out", str(tmp_path), "--data", "no/such.tsv"]) == 2
