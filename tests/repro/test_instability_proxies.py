"""P02 reproduction `instability_proxies`: quick mode runs, numbers are finite, and the verdict
follows from the measured figures by the module's rule."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import attnlab.mixers as mixers
import attnlab.repro.instability_proxies as ip
from attnlab.analysis import lr_sensitivity
from attnlab.repro import REPROS
from attnlab.repro.base import DOES_NOT_HOLD, HOLDS, INCONCLUSIVE, run_repro
from attnlab.tasks.base import Batch, Task, TaskSpec


def _m(sens_ratio, logit_ratio):
    return {"sensitivity_ratio_qkln_over_baseline": sens_ratio, "max_logit_ratio_baseline_over_qkln_at_top_lr": logit_ratio}


def test_decide_rule():
    assert ip.decide(_m(0.5, 100.0)) == HOLDS
    assert ip.decide(_m(0.9, 2.0)) == DOES_NOT_HOLD
    assert ip.decide(_m(0.5, 2.0)) == INCONCLUSIVE and ip.decide(_m(0.9, 100.0)) == INCONCLUSIVE
    assert ip.decide(_m(0.7, 10.0)) == DOES_NOT_HOLD  # thresholds are strict
    assert ip.decide(_m(math.nan, math.nan)) == DOES_NOT_HOLD


def _check_outcome(result, lrs, configs):
    m = result.measured
    assert m["lrs"] == list(lrs)
    for name in configs:
        losses, logits, lz, div = (m[f"{k}[{name}]"] for k in ("final_loss", "max_attention_logit", "log_z", "diverged"))
        assert len(losses) == len(logits) == len(lz) == len(div) == len(lrs)
        assert all(math.isfinite(x) or d for x, d in zip(losses, div))  # NaN only for a diverged run
        assert all(math.isfinite(x) and x > 0 for x in logits) and all(math.isfinite(x) for x in lz)
        # the sensitivity is recomputed from the reported losses by P02's definition
        assert m[f"lr_sensitivity[{name}]"] == pytest.approx(lr_sensitivity(dict(zip(lrs, losses)), m["init_loss"]))
        assert m[f"lr_sensitivity[{name}]"] >= 0
    assert m["sensitivity_ratio_qkln_over_baseline"] == pytest.approx(
        m["lr_sensitivity[qk_layernorm]"] / m["lr_sensitivity[baseline]"])
    assert m["max_logit_ratio_baseline_over_qkln_at_top_lr"] == pytest.approx(
        m["max_attention_logit[baseline]"][-1] / m["max_attention_logit[qk_layernorm]"][-1])
    assert result.verdict == ip.decide(m)
    assert all(__import__("pathlib").Path(p).exists() for p in result.plots)
    # qk-layernorm bounds the logit by sqrt(d_h) per head (unit LayerNorm gain at init, trained gains grow slowly)
    assert max(m["max_attention_logit[qk_layernorm]"]) < max(m["max_attention_logit[baseline]"])


# ---- the pipeline on tiny stand-ins, with an LR of 1.0 so that the divergence path is exercised ----

TEXT = "the quick brown fox jumps over the lazy dog. " * 40


class _Chars(Task):
    name, metric, higher_is_better = "chars", "loss", False

    def __init__(self, seed=0, seq_len=16):
        super().__init__(seed)
        self.seq_len, self.chars = seq_len, sorted(set(TEXT))
        self.ids = torch.tensor([self.chars.index(c) for c in TEXT])

    @property
    def spec(self):
        v = len(self.chars)
        return TaskSpec(input="tokens", output="lm", seq_len=self.seq_len, vocab_size=v, num_classes=v, causal=True)

    def batch(self, split, index, batch_size):
        st = torch.randint(0, len(self.ids) - self.seq_len - 1, (batch_size,), generator=self.generator(split, index))
        x = torch.stack([self.ids[s : s + self.seq_len + 1] for s in st.tolist()])
        return Batch(x[:, :-1], x[:, 1:])

    def loss(self, out, b):
        loss = F.cross_entropy(out.flatten(0, 1), b.targets.flatten())
        return loss, {"loss": float(loss.detach())}


class _TinyLM(nn.Module):
    def __init__(self, mixer, vocab, seq_len, dim, heads):
        super().__init__()
        self.emb, self.pos = nn.Embedding(vocab, dim), nn.Parameter(torch.zeros(seq_len, dim))
        self.norm1, self.attn = nn.LayerNorm(dim), mixers.create(mixer, dim, num_heads=heads)
        self.norm2, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab)

    def forward(self, t):
        x = self.emb(t) + self.pos[: t.shape[1]]
        x = x + self.attn(self.norm1(x), causal=True)
        return self.head(self.norm2(x))


def test_pipeline_on_stand_ins(tmp_path, monkeypatch):
    monkeypatch.setattr(ip, "_make_task", lambda seed, seq_len: _Chars(seed, seq_len))
    monkeypatch.setattr(ip, "_make_model", lambda mixer, v, n, d, depth, h: _TinyLM(mixer, v, n, d, h))
    quick = dict(ip.QUICK, lrs=(1e-2, 1.0), steps=30, warmup=3, batch_size=8, seq_len=16, dim=32)
    monkeypatch.setattr(ip, "QUICK", quick)
    monkeypatch.setitem(REPROS, "instability_proxies", "attnlab.repro.instability_proxies")
    threads = torch.get_num_threads()
    result = run_repro("instability_proxies", quick=True, out_dir=tmp_path, progress=False)
    _check_outcome(result, quick["lrs"], quick["configs"])
    assert (tmp_path / "result.json").exists() and (tmp_path / "lr_sweep.png").exists()
    assert torch.get_num_threads() == threads  # the sweep's one-thread setting is undone


# ---- the real quick mode (SequenceModel on char_lm) ----


def test_quick_mode(tmp_path):
    assert REPROS.get("instability_proxies") == "attnlab.repro.instability_proxies"
    result = run_repro("instability_proxies", quick=True, out_dir=tmp_path, progress=False)
    _check_outcome(result, ip.QUICK["lrs"], ip.QUICK["configs"])
    assert result.seconds < 60
