"""attnlab: attention mechanisms and transformer designs from 32 papers as tested,
CPU-fast, drop-in PyTorch modules, with a harness to compare them.

Subpackages: ``ops`` (tensor kernels + references), ``mixers`` (token mixers),
``models`` (backbones and named designs), ``tasks``, ``train``, ``analysis``,
``repro``, ``distributed``, ``bench``.
"""
__version__ = "0.1.0"

from attnlab.ops.recording import record_attention  # noqa: E402

__all__ = ["record_attention", "__version__"]
