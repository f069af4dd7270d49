"""The protocol: LR chosen per arm on val at a fraction of the budget, seeds on test, arms at chance, the record."""
from __future__ import annotations

import math

import pytest

from attnlab.repro.harness.arms import Arm, mixer_arm
from attnlab.repro.harness.protocol import (
    AT_CHANCE, SWEEP_SEED, Chance, Protocol, Trial, at_chance_figure, fair_arms, scaled_config, train_fair,
)

GRID = (1e-3, 1e-2, 1e-1)


def _fake(best_lr: dict, metric: dict, calls: list):
    """A trial whose val loss is smallest at the arm's ``best_lr`` (NaN = diverged above 0.05) and whose metric is
    ``metric[arm](seed)``; every call is recorded."""

    def trial(arm, lr, seed, steps, split):
        calls.append((arm.name, lr, seed, steps, split))
        diverged = lr > 0.05 and arm.name == "fragile"
        loss = math.nan if diverged else abs(math.log10(lr) - math.log10(best_lr[arm.name])) + 1.0
        return Trial(lr=lr, seed=seed, steps=steps, split=split, val_loss=loss, metric=metric[arm.name](seed, lr),
                     diverged=diverged, measured={"double": 2 * metric[arm.name](seed, lr)})

    return trial


def test_each_arm_gets_the_lr_with_the_lowest_val_loss_and_runs_every_seed_on_test():
    calls = []
    arms = [Arm("a", None), Arm("b", None)]
    trial = _fake({"a": 1e-2, "b": 1e-3}, {"a": lambda s, lr: 0.5 + s / 100, "b": lambda s, lr: 0.4}, calls)
    f = fair_arms(arms, trial, Protocol(GRID, seeds=(0, 1, 2), sweep_fraction=0.25), steps=100, name="t",
                  metric="accuracy", chance=Chance(0.1, 0.05), seed=7)
    assert f.lr == {"a": 1e-2, "b": 1e-3}
    sweep = [c for c in calls if c[4] == "val"]
    assert sweep == [(a, lr, 7 + SWEEP_SEED, 25, "val") for a in ("a", "b") for lr in GRID]  # a quarter, unjudged seed
    assert [c for c in calls if c[4] == "test"] == [(a, lr, 7 + s, 100, "test") for a, lr in (("a", 1e-2), ("b", 1e-3))
                                                   for s in (0, 1, 2)]
    assert f.values("a") == pytest.approx([0.57, 0.58, 0.59]) and f.values("a", "double")[0] == pytest.approx(1.14)
    d = f.difference("a", "b", scale=100)
    assert d.values == pytest.approx((17.0, 18.0, 19.0)) and d.mean == pytest.approx(18.0)
    assert f.best(["a", "b"]) == "a" and f.best(["a", "b"], higher_is_better=False) == "b"
    assert f.at_chance == []


def test_diverged_runs_are_never_chosen_and_all_diverged_falls_back_to_the_smallest_lr():
    calls = []
    trial = _fake({"fragile": 1e-1}, {"fragile": lambda s, lr: 0.5}, calls)
    f = fair_arms([Arm("fragile", None)], trial, Protocol(GRID, seeds=(0,)), steps=8, name="t", metric="m",
                  chance=None)
    assert f.lr["fragile"] == 1e-2  # the best LR diverged: the best of the rest
    assert f.record()["sweep"]["fragile"]["diverged"] == [False, False, True]

    def all_diverge(arm, lr, seed, steps, split):
        return Trial(lr=lr, seed=seed, steps=steps, split=split, val_loss=math.nan, metric=math.nan, diverged=True)

    f = fair_arms([Arm("x", None)], all_diverge, Protocol(GRID, seeds=(0,)), steps=8, name="t", metric="m",
                  chance=Chance(0.1, 0.05))
    assert f.lr["x"] == GRID[0] and f.at_chance == ["x"]  # NaN counts as at chance


def test_an_arm_is_at_chance_only_if_every_run_was():
    calls = []
    # "flat" never leaves chance (0.1 + margin 0.05); "late" does only at one LR of the sweep; "seeds" only on a seed
    metric = {"flat": lambda s, lr: 0.12, "late": lambda s, lr: 0.5 if lr == 1e-1 else 0.1,
              "seeds": lambda s, lr: 0.2 if s == 2 else 0.1}
    trial = _fake({"flat": 1e-2, "late": 1e-2, "seeds": 1e-2}, metric, calls)
    f = fair_arms([Arm(a, None) for a in metric], trial, Protocol(GRID, seeds=(0, 1, 2)), steps=8, name="t",
                  metric="m", chance=Chance(0.1, 0.05))
    assert f.at_chance == ["flat"]
    assert at_chance_figure(f) == {AT_CHANCE: ["flat"]}
    g = fair_arms([Arm("flat", None)], trial, Protocol(GRID, seeds=(0,)), steps=8, name="u", metric="m",
                  chance=Chance(0.1, 0.05))
    assert at_chance_figure(f, g) == {f"{AT_CHANCE}: t": ["flat"], f"{AT_CHANCE}: u": ["flat"]}
    lower = Chance(2.0, 0.5, higher_is_better=False)
    assert lower.at(1.6) and not lower.at(1.4) and lower.at(math.nan)


def test_a_given_lr_or_a_one_point_grid_skips_the_sweep():
    calls = []
    trial = _fake({"a": 1e-2, "b": 1e-2}, {"a": lambda s, lr: 0.5, "b": lambda s, lr: 0.5}, calls)
    f = fair_arms([Arm("a", None), Arm("b", None)], trial, Protocol(GRID, seeds=(0,)), steps=8, name="t", metric="m",
                  chance=None, chosen={"a": 1e-1})
    assert f.lr == {"a": 1e-1, "b": 1e-2} and "a" not in f.sweep and len(f.sweep["b"]) == 3
    calls.clear()
    fair_arms([Arm("a", None)], trial, Protocol((3e-3,), seeds=(0, 1)), steps=8, name="t", metric="m", chance=None)
    assert [c[4] for c in calls] == ["test", "test"]


def test_record_holds_what_the_report_shows():
    calls = []
    trial = _fake({"a": 1e-3}, {"a": lambda s, lr: 0.3}, calls)
    rec = fair_arms([Arm("a", None)], trial, Protocol(GRID, seeds=(0, 1), sweep_fraction=0.5), steps=10, name="t",
                    metric="accuracy", chance=Chance(0.1, 0.05)).record()
    assert rec["grid"] == list(GRID) and rec["sweep_steps"] == 5 and rec["steps"] == 10 and rec["seeds"] == [0, 1]
    assert rec["chosen"] == {"a": 1e-3} and rec["at_edge"] == ["a"] and rec["test"] == {"a": [0.3, 0.3]}
    assert rec["split"] == {"sweep": "val", "verdict": "test"} and rec["chance"]["level"] == 0.1
    assert rec["sweep"]["a"]["val_loss"] == pytest.approx([1.0, 2.0, 3.0])


@pytest.mark.parametrize("kw, match", [
    (dict(lrs=()), "lrs: expected a non-empty increasing"), (dict(lrs=(1e-2, 1e-3)), "lrs: expected"),
    (dict(lrs=(0.0, 1e-3)), "lrs: expected"), (dict(lrs=(1e-3,), seeds=()), "seeds: expected"),
    (dict(lrs=(1e-3,), seeds=(0, 0)), "seeds: expected"), (dict(lrs=(1e-3,), sweep_fraction=0.0), "sweep_fraction"),
    (dict(lrs=(1e-3,), sweep_fraction=1.5), "sweep_fraction"),
])
def test_protocol_checks_its_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        Protocol(**kw)
    assert Protocol((1e-3,), sweep_fraction=0.25).sweep_steps(2) == 1  # at least one step


def test_distinct_arm_names_are_required():
    with pytest.raises(ValueError, match="arms: expected arms with distinct names"):
        fair_arms([Arm("a", None), Arm("a", None)], None, Protocol(GRID), steps=1, name="t", metric="m", chance=None)


def test_scaled_config_compresses_the_schedule_into_a_sweep_run():
    from attnlab.train import TrainConfig

    template = TrainConfig(steps=400, warmup_steps=40, eval_every=50, log_every=20, lr=1.0)
    cfg = scaled_config(template)
    sweep, full = cfg("arm", 3e-3, 100, 5), cfg("arm", 1e-3, 400, 6)
    assert (sweep.steps, sweep.warmup_steps, sweep.eval_every, sweep.log_every, sweep.lr, sweep.seed) == \
        (100, 10, 0, 5, 3e-3, 5)
    assert (full.steps, full.warmup_steps, full.eval_every, full.lr, full.seed) == (400, 40, 50, 1e-3, 6)


def test_train_fair_on_a_real_task():
    from attnlab.tasks import create
    from attnlab.train import TrainConfig

    make = lambda seed: create("associative_recall", vocab_size=16, seq_len=12, num_pairs=2, seed=seed)  # noqa
    template = TrainConfig(steps=4, batch_size=4, warmup_steps=1, eval_every=2, eval_batches=1, log_every=1)
    arms = [mixer_arm("softmax", "softmax", dim=16, depth=1, num_heads=2),
            mixer_arm("linear", "linear_attention", dim=16, depth=1, num_heads=2)]
    f = train_fair(arms, make, template, Protocol((1e-3, 1e-2), seeds=(0, 1), sweep_fraction=0.5), name="recall",
                   chance=Chance(0.5, 0.05), keep_models=True,
                   measure=lambda model, task, split: {"split": float(split == "test")})
    assert set(f.lr) == {"softmax", "linear"} and all(lr in (1e-3, 1e-2) for lr in f.lr.values())
    assert [t.steps for t in f.sweep["softmax"]] == [2, 2] and [t.steps for t in f.runs["softmax"]] == [4, 4]
    assert all(t.model is None for t in f.sweep["softmax"]) and all(t.model is not None for t in f.runs["softmax"])
    assert f.values("linear", "split") == [1.0, 1.0] and [s for s, _ in f.runs["softmax"][0].curve] == [2, 4]
    assert f.metric == "accuracy" and all(0.0 <= v <= 1.0 for v in f.values("softmax"))


def test_fixed_record_is_a_record_without_a_sweep(tmp_path):
    from attnlab.repro.harness.plots import plot_sweeps
    from attnlab.repro.harness.protocol import fixed_record
    from attnlab.repro.harness.runner import protocol_markdown

    rec = fixed_record("gd", "lr", 0.1, {"W": [0.99, 0.98, 0.97]}, metric="corr", why="the step sets the speed")
    assert rec["chosen"] == {"W": 0.1} and rec["grid"] == [0.1] and rec["seeds"] == [0, 1, 2]
    assert rec["sweep"] == {} and "the step sets the speed" in rec["split"]["sweep"]
    assert plot_sweeps(None, [rec]) is None  # nothing swept, nothing drawn
    assert "| W | - | 0.1 | [0.99, 0.98, 0.97] |" in protocol_markdown(rec)


def test_blind_sweep_lists_the_arms_at_chance_at_every_swept_lr_that_learned_on_a_seed():
    calls = []
    # a: at chance in the short sweep, learns at its LR on the seeds; b: leaves chance at one LR only; c: never
    metric = {"a": lambda s, lr: 0.12 if calls[-1][4] == "val" else 0.9, "b": lambda s, lr: 0.5 if lr == 1e-2 else 0.1,
              "c": lambda s, lr: 0.1}
    trial = _fake({"a": 1e-2, "b": 1e-2, "c": 1e-3}, metric, calls)
    f = fair_arms([Arm("a", None), Arm("b", None), Arm("c", None)], trial, Protocol(GRID, seeds=(0, 1)), steps=8,
                  name="t", metric="accuracy", chance=Chance(0.1, 0.05))
    # a learned on its seeds: blind; c never learned: at chance, not listed twice
    assert f.blind_sweep == ["a"] and f.at_chance == ["c"]
    assert f.record()["blind_sweep"] == ["a"]
    no_chance = fair_arms([Arm("c", None)], trial, Protocol(GRID, seeds=(0,)), steps=8, name="t", metric="m",
                          chance=None)
    assert no_chance.blind_sweep == [] and no_chance.record()["blind_sweep"] == []


def test_blind_arms_of_records_written_before_the_field_are_derived_from_the_sweep():
    from attnlab.repro.harness.protocol import blind_arms

    old = {"chance": {"level": 0.125, "margin": 0.05, "higher_is_better": True},
           "sweep": {"softmax": {"val_metric": [0.05, 0.12, 0.13]}, "deltanet": {"val_metric": [0.1, 0.2, 0.1]},
                     "broken": {"val_metric": [float("nan"), 0.1, None]}}}
    assert blind_arms(old) == ["broken", "softmax"]  # 0.2 left chance (0.175); NaN / None count as at chance
    assert blind_arms({**old, "at_chance": ["softmax"]}) == ["broken"]  # named as at chance instead
    lower = {"chance": {"level": 5.0, "margin": 0.5, "higher_is_better": False},
             "sweep": {"a": {"val_metric": [4.6, 4.9]}, "b": {"val_metric": [4.4, 5.0]}}}
    assert blind_arms(lower) == ["a"]
    assert blind_arms({**old, "blind_sweep": []}) == [] and blind_arms({"chance": None, "sweep": old["sweep"]}) == []
