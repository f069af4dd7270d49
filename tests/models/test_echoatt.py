"""EchoAtt students (P14): followers reuse the leader's map with inherited W_V, W_O and no W_Q, W_K (checked
against the formula), gradients reach the leader's W_Q, W_K through the shared map, any softmax-family mixer
works, groups are validated, the FLOP estimate."""
from __future__ import annotations

import pytest
import torch

from attnlab import record_attention
from attnlab.models import SequenceModel, echoatt_student
from attnlab.models.echoatt import SharedAttentionFollower, check_groups, removed_attention_flops, reshare


def _teacher(mixer="softmax", **kw):
    torch.manual_seed(0)
    return SequenceModel(vocab_size=20, dim=16, depth=5, num_heads=2, mixer=mixer, **kw).double().eval()


def test_followers_apply_the_leaders_map_to_their_own_values():
    teacher = _teacher()
    student = echoatt_student(teacher, [(1, 2, 3)])
    x = torch.randint(0, 20, (2, 9))
    with record_attention(student) as rec:
        out = student(x)
    leader_map = rec.last("blocks.1.mixer")
    for layer in (2, 3):
        torch.testing.assert_close(rec.last(f"blocks.{layer}.mixer"), leader_map, atol=0, rtol=0)
    # follower 2 by hand: its input is the teacher-shaped block's normed input; output proj(P v)
    follower = student.blocks[2].mixer
    assert isinstance(follower, SharedAttentionFollower)
    c = 16
    torch.testing.assert_close(follower.v.weight, teacher.blocks[2].mixer.qkv.weight[2 * c:], atol=0, rtol=0)
    torch.testing.assert_close(follower.proj.weight, teacher.blocks[2].mixer.proj.weight, atol=0, rtol=0)
    # unchanged layers give the teacher's outputs where nothing upstream changed: layers 0 and 1
    assert not any("blocks.2.mixer.qkv" in n or "blocks.3.mixer.qkv" in n for n, _ in student.named_parameters())
    n_removed = sum(p.numel() for p in teacher.parameters()) - sum(p.numel() for p in student.parameters())
    assert n_removed == 2 * (2 * c * c)  # W_Q and W_K of two followers
    assert out.shape == (2, 9, 20)


def test_follower_formula_and_gradients_through_the_shared_map():
    teacher = _teacher()
    student = echoatt_student(teacher, [(1, 2)])
    h = torch.randn(2, 7, 16, dtype=torch.float64)
    leader, follower = student.blocks[1].mixer, student.blocks[2].mixer
    y_leader = leader(h, causal=True)
    torch.testing.assert_close(y_leader, teacher.blocks[1].mixer(h, causal=True), atol=1e-12, rtol=1e-12)
    with record_attention(None) as rec:
        teacher.blocks[1].mixer(h, causal=True)
    p = rec.maps["call0"][0]
    h2 = torch.randn(2, 7, 16, dtype=torch.float64)
    y = follower(h2, causal=True)
    v = (h2 @ follower.v.weight.T).view(2, 7, 2, 8).transpose(1, 2)
    want = (p @ v).transpose(1, 2).reshape(2, 7, 16) @ follower.proj.weight.T + follower.proj.bias
    torch.testing.assert_close(y, want, atol=1e-12, rtol=1e-12)
    # the follower's loss reaches the leader's query/key weights through the map
    leader(h, causal=True)
    follower(h2, causal=True).sum().backward()
    assert leader.mixer.qkv.weight.grad[:32].abs().max() > 0


@pytest.mark.parametrize("mixer, kw", [("softmax_qknorm", {}), ("sliding_window", {"window": 4}), ("ssa", {}),
                                        ("complex_attention", {})])
def test_any_softmax_family_mixer(mixer, kw):
    teacher = _teacher(mixer, mixer_kwargs=kw)
    student = echoatt_student(teacher, [(0, 1), (2, 3, 4)])
    out = student(torch.randint(0, 20, (2, 8)))
    assert out.shape == (2, 8, 20) and torch.isfinite(out).all()


@pytest.mark.parametrize("mixer", ["softmax", "softmax_qknorm", "complex_attention"])
def test_both_ways_of_sharing_give_the_same_outputs_and_gradients(assert_close, mixer):
    teacher = _teacher(mixer)
    by_map = echoatt_student(teacher, [(1, 2, 3)])
    by_qk = reshare(by_map, "qk")
    assert echoatt_student(teacher, [(1, 2)], share="qk").blocks[1].mixer.shared.mode == "qk"
    x = torch.randint(0, 20, (2, 9))
    assert_close(by_qk(x), by_map(x), atol=1e-12, rtol=1e-12,
                 grads_of=(list(by_qk.parameters()), list(by_map.parameters())))
    sliding = echoatt_student(_teacher("sliding_window", mixer_kwargs={"window": 3}), [(1, 2)], share="qk")
    with pytest.raises(ValueError, match=r"mixer: expected a mixer whose attention runs through "
                                         r"attnlab.ops.attention once per call \(share='qk'\)"):
        sliding(x)
    with pytest.raises(ValueError, match=r"share: expected one of \['map', 'qk'\]"):
        echoatt_student(teacher, [(1, 2)], share="probs")


def test_groups_and_teachers_are_validated():
    assert check_groups([(1, 2), [3, 4]], 5) == [(1, 2), (3, 4)]
    with pytest.raises(ValueError, match=r"groups: expected disjoint groups, received \(2, 3\) overlaps layers \[2\]"):
        check_groups([(1, 2), (2, 3)], 5)
    with pytest.raises(ValueError, match=r"groups: expected layer indices in \[0, 5\) \(the model's depth\)"):
        check_groups([(4, 5)], 5)
    with pytest.raises(ValueError, match=r"groups: expected consecutive layer indices"):
        check_groups([(1, 3)], 5)
    with pytest.raises(TypeError, match=r"groups: expected runs of at least two int layer indices"):
        check_groups([(1,)], 5)
    with pytest.raises(TypeError, match=r"teacher: expected a softmax-family mixer with a fused qkv projection"):
        echoatt_student(_teacher("deltanet"), [(1, 2)])
    student = echoatt_student(_teacher(), [(1, 2)])
    with pytest.raises(ValueError, match=r"forward: expected the group's leader to run before its followers"):
        student.blocks[2].mixer(torch.randn(1, 4, 16, dtype=torch.float64))


def test_removed_flops_count_the_followers_qk_work():
    est = removed_attention_flops(depth=6, dim=64, n=128, followers=2, mlp_ratio=4.0, vocab_size=0)
    per_layer = 4 * 64 * 64 + 2 * 128 * 64 + 8 * 64 * 64
    assert est["total"] == 6 * per_layer and est["removed"] == 2 * (2 * 64 * 64 + 128 * 64)
    assert abs(est["fraction"] - est["removed"] / est["total"]) < 1e-15
    qk = removed_attention_flops(depth=6, dim=64, n=128, followers=2, share="qk")
    assert qk["removed"] == 2 * 2 * 64 * 64  # recomputing the scores: only W_Q, W_K are skipped
