"""Small helpers used across the package: argument checks with uniform error messages
(``checks``), torch thread-count control (``threads``), interleaved step timing (``timing``) and
registry look-ups with close-match hints (``names``).

They sit below every other subpackage (ops, layers, mixers, ...) and import none of them.
"""
