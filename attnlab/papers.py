"""The 32 reference papers: id (P01..P32) -> slug, title, date. The slug-to-paper table of attnlab.

Slugs name reproductions (``attnlab repro <slug>``) and appear in the registries: every
mixer and model records the id of the paper it comes from (``attnlab list`` prints id and
slug). ``docs/papers.md`` maps each id to the files that implement it. Plain data, no
imports: any layer may read it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Paper", "PAPERS", "BY_SLUG", "get_paper", "paper_label"]


@dataclass(frozen=True)
class Paper:
    """One reference paper: ``id`` (``"P12"``), ``slug`` (``"deltanet"``), ``title`` and publication ``date``."""

    id: str
    slug: str
    title: str
    date: str


#: id -> Paper, in id order.
PAPERS: dict[str, Paper] = {p.id: p for p in (
    Paper('P01', 'random_features', 'What can a Single Attention Layer Learn? A Study Through the Random Features Lens', 'Jul 21, 2023'),
    Paper('P02', 'instability_proxies', 'Small-scale proxies for large-scale Transformer training instabilities', 'Sep 25, 2023'),
    Paper('P03', 'combiner', 'Combiner: Full Attention Transformer with Sparse Computation Cost', 'Jul 12, 2021'),
    Paper('P04', 'spectformer', 'SpectFormer: Frequency and Attention is what you need in a Vision Transformer', 'Apr 13, 2023'),
    Paper('P05', 'scan_snap', 'Scan and Snap: Understanding Training Dynamics and Token Composition in 1-layer Transformer', 'May 25, 2023'),
    Paper('P06', 'unified_long_sequence', 'A Unified View of Long-Sequence Models towards Modeling Million-Scale Dependencies', 'Feb 13, 2023'),
    Paper('P07', 'activator', 'Activator: GLU Activations as The Core Functions of a Vision Transformer', 'May 24, 2024'),
    Paper('P08', 'deconstructing_attention', 'Deconstructing Attention: Investigating Design Principles for Effective Language Modeling', 'Oct 13, 2025'),
    Paper('P09', 's2aformer', 'S2AFormer: Strip Self-Attention for Efficient Vision Transformer', 'May 28, 2025'),
    Paper('P10', 'biformer', 'BiFormer: Vision Transformer with Bi-Level Routing Attention', 'Mar 15, 2023'),
    Paper('P11', 'convit', 'ConViT: Improving Vision Transformers with Soft Convolutional Inductive Biases', 'Mar 19, 2021'),
    Paper('P12', 'deltanet', 'Parallelizing Linear Transformers with the Delta Rule over Sequence Length', 'Jun 10, 2024'),
    Paper('P13', 'crossvit', 'CrossViT: Cross-Attention Multi-Scale Vision Transformer for Image Classification', 'Mar 27, 2021'),
    Paper('P14', 'echoatt', 'EchoAtt: Attend, Copy, then Adjust for More Efficient Large Language Models', 'Sep 22, 2024'),
    Paper('P15', 'hyena_nd', 'Multi-Dimensional Hyena for Spatial Inductive Bias', 'Sep 24, 2023'),
    Paper('P16', 'fod', 'Focus the Discrepancy: Intra- and Inter-Correlation Learning for Image Anomaly Detection', 'Aug 5, 2023'),
    Paper('P17', 'attention_drop', 'What Matters in Transformers? Not All Attention is Needed', 'Jun 22, 2024'),
    Paper('P18', 'complexformer', 'ComplexFormer: Disruptively Advancing Transformer Inference Ability via Head-Specific Complex Vector Attention', 'May 15, 2025'),
    Paper('P19', 'axial', 'Axial Attention in Multidimensional Transformers', 'Dec 20, 2019'),
    Paper('P20', 'sea', 'SEA: Sparse Linear Attention with Estimated Attention Mask', 'Oct 2, 2023'),
    Paper('P21', 'video_anomaly', 'Advancing Video Anomaly Detection: A Bi-Directional Hybrid Framework for Enhanced Single- and Multi-Task Approaches', 'Apr 20, 2025'),
    Paper('P22', 'att_svm', 'Transformers as Support Vector Machines', 'Aug 31, 2023'),
    Paper('P23', 'mamba_ssm', 'Computation-Efficient Era: A Comprehensive Survey of State Space Models in Medical Image Analysis', 'Jun 5, 2024'),
    Paper('P24', 'icl_regression', 'In-Context Linear Regression Demystified: Training Dynamics and Mechanistic Interpretability of Multi-Head Softmax Attention', 'Mar 16, 2025'),
    Paper('P25', 'kmax_deeplab', 'kMaX-DeepLab: k-means Mask Transformer', 'Jul 8, 2022'),
    Paper('P26', 'dinat', 'Dilated Neighborhood Attention Transformer', 'Sep 29, 2022'),
    Paper('P27', 'fit', 'FIT: Far-reaching Interleaved Transformers', 'May 21, 2023'),
    Paper('P28', 'ssa_pathways', 'The Information Pathways Hypothesis: Transformers are Dynamic Self-Ensembles', 'Jun 2, 2023'),
    Paper('P29', 'shvit', 'SHViT: Single-Head Vision Transformer with Memory Efficient Macro Design', 'Jan 29, 2024'),
    Paper('P30', 'isomer', 'Isomer: Isomerous Transformer for Zero-shot Video Object Segmentation', 'Aug 13, 2023'),
    Paper('P31', 'path_ensemble', 'Revisiting Vision Transformer from the View of Path Ensemble', 'Aug 12, 2023'),
    Paper('P32', 'tnt', 'Transformer in Transformer', 'Feb 26, 2021'),
)}

#: slug -> Paper.
BY_SLUG: dict[str, Paper] = {p.slug: p for p in PAPERS.values()}


def get_paper(key: str) -> Paper:
    """The paper with id (``"P12"``) or slug (``"deltanet"``) ``key``; KeyError naming the known ids otherwise."""
    if key in PAPERS:
        return PAPERS[key]
    if key in BY_SLUG:
        return BY_SLUG[key]
    raise KeyError(f"paper: expected an id P01..P32 or a slug such as 'deltanet', received {key!r}")


def paper_label(paper_id: str) -> str:
    """``"P12 deltanet"`` for a paper id, ``"-"`` for none (a baseline that belongs to no paper)."""
    return f"{paper_id} {PAPERS[paper_id].slug}" if paper_id else "-"
