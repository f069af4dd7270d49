"""Small helpers used across the package: argument checks with uniform error messages
(``checks``), torch thread-count control (``threads``) and interleaved step timing (``timing``).

They sit below every other subpackage (ops, layers, mixers, ...) and import none of them.
"""
