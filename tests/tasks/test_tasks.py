"""Tasks: determinism, the data mean what they claim (recall pairs, shapes geometry, regression), splits, errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attnlab import tasks
from attnlab.tasks.char_lm import VOCAB, decode, encode
from attnlab.tasks.icl_regression import least_squares_prediction
from attnlab.tasks.scoring import IGNORE


@pytest.mark.parametrize("name", sorted(tasks.available()))
def test_batches_are_a_pure_function_of_seed_split_index(name):
    t = tasks.create(name, seed=3)
    a, b = t.batch("train", 5, 4), tasks.create(name, seed=3).batch("train", 5, 4)
    assert torch.equal(a.inputs, b.inputs) and torch.equal(a.targets, b.targets)
    assert not torch.equal(a.inputs, t.batch("train", 6, 4).inputs)
    assert not torch.equal(a.inputs, t.batch("val", 5, 4).inputs)
    if name != "digits":  # digits' val/test splits are fixed images, independent of the seed
        assert not torch.equal(a.inputs, tasks.create(name, seed=4).batch("train", 5, 4).inputs)


@pytest.mark.parametrize("name", sorted(tasks.available()))
def test_loss_of_perfect_and_wrong_outputs(name):
    """The loss and metric move the right way between a perfect and a wrong prediction."""
    t = tasks.create(name)
    b = t.batch("val", 0, 8)
    spec = t.spec
    if spec.output in ("masks", "anomaly_map"):
        pytest.skip(f"{spec.output!r} outputs are scored in tests/tasks/test_{name}.py")
    if spec.output == "regression":
        good = torch.zeros(*b.inputs.shape[:2], 1)
        good[:, -1, 0] = b.targets
        bad = good + 1.0
        (lg, mg), (lb, mb) = t.loss(good, b), t.loss(bad, b)
        assert lg.item() == 0 and abs(lb.item() - 1.0) < 1e-6 and mg["mse"] < mb["mse"]
        return
    if spec.output == "frames":  # predicted video frames: the true frames, and their negatives
        good, bad = b.targets.clone(), 1.0 - b.targets
        (lg, mg), (lb, mb) = t.loss(good, b), t.loss(bad, b)
        assert lg.item() < 1e-6 < lb.item() and mg[t.metric] > mb[t.metric]
        return
    if spec.output == "lm":
        tgt = b.targets.clamp_min(0)
        good = torch.nn.functional.one_hot(tgt, spec.num_classes).float() * 20
    else:
        good = torch.nn.functional.one_hot(b.targets, spec.num_classes).float() * 20
    bad = -good
    (lg, mg), (lb, mb) = t.loss(good, b), t.loss(bad, b)
    assert lg.item() < 1e-6 < lb.item()
    assert mg["accuracy"] == 1.0 and mb["accuracy"] < 1.0


def test_recall_targets_are_the_values_bound_to_the_queried_keys():
    t = tasks.create("associative_recall", vocab_size=64, seq_len=48, num_pairs=6, seed=1)
    b = t.batch("train", 0, 16)
    x, y = b.inputs.numpy(), b.targets.numpy()
    for row_x, row_y in zip(x, y):
        keys, vals = row_x[0:12:2], row_x[1:12:2]
        assert len(set(keys)) == 6 and set(keys) <= set(range(1, 32)) and set(vals) <= set(range(32, 64))
        pos = np.flatnonzero(row_y != IGNORE)
        assert len(pos) == 6 and (pos >= 12).all() and (pos % 2 == 0).all()
        binding = dict(zip(keys, vals))
        assert sorted(row_x[pos]) == sorted(keys)  # every key is queried once
        assert all(binding[row_x[p]] == row_y[p] for p in pos)


def test_recall_power_law_puts_queries_early_and_uniform_spreads_them():
    early = tasks.create("associative_recall", seq_len=256, num_pairs=8, power_a=0.01).batch("train", 0, 64)
    flat = tasks.create("associative_recall", seq_len=256, num_pairs=8, power_a=1.0).batch("train", 0, 64)
    mean_pos = lambda b: (b.targets != IGNORE).nonzero()[:, 1].float().mean().item()  # noqa: E731
    assert mean_pos(early) < mean_pos(flat) - 30


@pytest.mark.parametrize("kw, match", [
    ({"seq_len": 20, "num_pairs": 8}, "seq_len"),
    ({"vocab_size": 10, "num_pairs": 8}, "vocab_size"),
    ({"power_a": 0.0}, "power_a"),
])
def test_recall_bad_config_is_named(kw, match):
    with pytest.raises(ValueError, match=match):
        tasks.create("associative_recall", **kw)


def test_icl_regression_least_squares_is_exact_without_noise_and_targets_are_hidden():
    t = tasks.create("icl_regression", dim=5, num_examples=20)
    b = t.batch("train", 0, 32)
    assert (b.inputs[:, -1, -1] == 0).all()
    torch.testing.assert_close(b.inputs[:, :-1, -1], torch.einsum("bnd,bd->bn", b.inputs[:, :-1, :-1], b.extras["w"]))
    torch.testing.assert_close(least_squares_prediction(b), b.targets, rtol=1e-4, atol=1e-4)
    longer = t.sample("val", 0, 4, num_examples=80)
    assert longer.inputs.shape == (4, 81, 6)


def test_char_lm_targets_are_inputs_shifted_and_splits_are_disjoint_files():
    t = tasks.create("char_lm", seq_len=64)
    b = t.batch("train", 0, 4)
    assert torch.equal(b.inputs[:, 1:], b.targets[:, :-1])
    assert t.spec.vocab_size == len(VOCAB) == 98
    assert all(len(v) > 10_000 for v in t.data.values())
    # windows of different splits come from different files: no long val window occurs in train
    val = decode(t.data["val"][1000:1200])
    assert val not in decode(t.data["train"][: 400_000])


def test_char_lm_encoding_round_trips_ascii_and_maps_others_to_zero():
    assert decode(encode("def f(x):\n\treturn x")) == "def f(x):\n\treturn x"
    ids = encode("aé€b")
    assert list(ids) == [encode("a")[0], 0, 0, encode("b")[0]]


def test_char_lm_reads_a_user_file(tmp_path):
    p = tmp_path / "corpus.txt"
    p.write_text("hello world\n" * 500)
    t = tasks.create("char_lm", seq_len=16, path=str(p))
    assert decode(t.batch("train", 0, 1).inputs[0]).replace("\n", " ").strip().split(" ")[0] in ("hello", "world", "")
    with pytest.raises(ValueError, match="path"):
        tasks.create("char_lm", path=str(tmp_path / "missing.txt"))


def test_digits_splits_are_disjoint_and_fixed():
    t = tasks.create("digits", img_size=16)
    idx = {k: set(v.tolist()) for k, v in t.index.items()}
    assert not (idx["train"] & idx["val"]) and not (idx["train"] & idx["test"]) and not (idx["val"] & idx["test"])
    assert sum(map(len, idx.values())) == 1797
    assert tasks.create("digits", seed=7).index["val"].tolist() == t.index["val"].tolist()
    assert t.batch("val", 0, 8).inputs.shape == (8, 1, 16, 16)


def _centroid(img: torch.Tensor, rgb: tuple[float, float, float]) -> tuple[float, float]:
    ref = torch.tensor(rgb)[:, None, None]
    m = ((img - ref).abs().max(0).values < 0.3).nonzero().float()
    return m[:, 0].mean().item(), m[:, 1].mean().item()


def test_shapes_label_encodes_where_blue_is_relative_to_red():
    t = tasks.create("shapes", noise=0.0)
    b = t.batch("train", 0, 64)
    for img, label in zip(b.inputs, b.targets.tolist()):
        ry, rx = _centroid(img, (1.0, 0.1, 0.1))
        by, bx = _centroid(img, (0.1, 0.2, 1.0))
        quadrant = label // 2
        assert (bx > rx) == bool(quadrant % 2) and (by > ry) == bool(quadrant // 2)
    counts = np.bincount(b.targets.numpy(), minlength=8)
    assert (counts > 0).sum() >= 6  # roughly balanced


def test_shapes_patch_bag_cannot_see_the_quadrant():
    """Mirroring the image flips the left/right bit of the label: the label depends on positions."""
    t = tasks.create("shapes", noise=0.0)
    b = t.batch("train", 1, 16)
    for img, label in zip(b.inputs, b.targets.tolist()):
        ry, rx = _centroid(img.flip(-1), (1.0, 0.1, 0.1))
        by, bx = _centroid(img.flip(-1), (0.1, 0.2, 1.0))
        assert (bx > rx) != bool((label // 2) % 2)


def test_unknown_task_and_kwargs_are_named():
    with pytest.raises(KeyError, match="did you mean"):
        tasks.create("associative_recal")
    with pytest.raises(TypeError, match="unknown"):
        tasks.create("digits", colour=True)
    t = tasks.create("digits")
    with pytest.raises(ValueError, match="split"):
        t.batch("dev", 0, 4)
    with pytest.raises(ValueError, match="index"):
        t.batch("train", -1, 4)
