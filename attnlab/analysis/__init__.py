"""Analysis tools used by the papers: LR sensitivity and LR sweeps, attention-logit growth and
output-logit divergence probes (P02); the KQ/OV pattern and debiased-GD probes of P24;
attention similarity between two maps or models (KL, JS, top-k overlap, mass recall; P20); module redundancy
and dropping on attnlab and Hugging Face decoders (P17); Scan and Snap's attention-dynamics probes (P05); the
attention SVM (P22); the token-influence map of any mixer (P06).

    from attnlab.analysis import lr_sensitivity, max_attention_logit, output_log_z
    from attnlab.analysis import redundancy_scores, choose_drops, drop_modules, token_influence, att_svm
"""
from attnlab.analysis.attention_similarity import (attention_js, attention_kl, attention_maps, compare_maps,
                                                   compare_recordings, mass_recall, topk_overlap)
from attnlab.analysis.icl_patterns import fit_scale_r2, gd_prediction, kq_pattern, ov_pattern
from attnlab.analysis.logit_growth import max_attention_logit, output_log_z
from attnlab.analysis.lr_sensitivity import capped_losses, lr_sensitivity, lr_sweep
from attnlab.analysis.att_svm import att_svm, att_svm_problem, correlation, locally_optimal, normalized_gd
from attnlab.analysis.lm_eval import perplexity
from attnlab.analysis.module_drop import DropPlan, drop_modules
from attnlab.analysis.redundancy import RedundancyScores, choose_drops, random_drops, redundancy_scores
from attnlab.analysis.scan_snap import attention_stats, expected_attention, sequence_model_probe, train_scan_snap
from attnlab.analysis.token_influence import InfluenceMap, plot_influence, token_influence

__all__ = ["lr_sensitivity", "capped_losses", "lr_sweep", "max_attention_logit", "output_log_z",
           "kq_pattern", "ov_pattern", "gd_prediction", "fit_scale_r2",
           "attention_kl", "attention_js", "topk_overlap", "mass_recall", "compare_maps", "compare_recordings",
           "attention_maps", "redundancy_scores", "RedundancyScores", "choose_drops", "random_drops", "DropPlan",
           "drop_modules", "perplexity", "token_influence", "InfluenceMap", "plot_influence", "att_svm",
           "att_svm_problem", "correlation", "locally_optimal", "normalized_gd", "train_scan_snap", "expected_attention",
           "attention_stats", "sequence_model_probe"]
