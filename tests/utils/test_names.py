"""attnlab.utils.names.lookup: the value of a known name; for an unknown one a KeyError naming the kind, the
known names, what was received and the closest matches."""
from __future__ import annotations

import pytest

from attnlab.utils.names import close_matches, lookup, unknown_hint


def test_known_name_gives_its_value_and_unknown_names_are_explained():
    table = {"softmax": 1, "softmax_qknorm": 2, "identity": 3}
    assert lookup(table, "identity", "mixer") == 3
    with pytest.raises(KeyError, match=r"mixer name: expected one of \['identity', 'softmax', 'softmax_qknorm'\], "
                                       r"received 'softmx' \(did you mean softmax, softmax_qknorm\?\)"):
        lookup(table, "softmx", "mixer")
    with pytest.raises(KeyError) as err:
        lookup(table, 7, "task")
    assert "received 7" in str(err.value) and "did you mean" not in str(err.value)


def test_abbreviations_and_substrings_are_suggested_and_arg_names_the_argument():
    table = {"associative_recall": 1, "char_lm": 2, "icl_regression": 3}
    with pytest.raises(KeyError, match=r"task name: .* received 'assoc' \(did you mean associative_recall\?\)"):
        lookup(table, "assoc", "task")
    with pytest.raises(KeyError, match=r"received 'regression' \(did you mean icl_regression\?\)"):
        lookup(table, "regression", "task")
    with pytest.raises(KeyError) as err:
        lookup(table, "zzz", "suite", arg="--suite")
    assert err.value.args[0].startswith("--suite: expected one of ['associative_recall', 'char_lm'")
    assert close_matches("x", table) == [] and close_matches("CHAR", table) == ["char_lm"]


def test_unknown_keywords_get_the_close_known_one():
    assert unknown_hint(["windw", "zzz"], ["window", "num_heads"]) == " (did you mean window for windw?)"
    assert unknown_hint(["zzz"], ["window"]) == ""
