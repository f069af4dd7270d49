"""attnlab.mixers.registry: create / get_info errors, and what every entry records (module, paper)."""
from __future__ import annotations

import importlib
import inspect

import pytest

import attnlab.mixers as mixers
from attnlab.mixers.base import Capabilities, TokenMixer
from attnlab.mixers.registry import register
from attnlab.papers import PAPERS


def test_unknown_mixer_and_kwargs_are_named():
    with pytest.raises(KeyError, match=r"did you mean softmax"):
        mixers.create("softmx", 8)
    with pytest.raises(TypeError, match=r"mixer 'softmax' kwargs: .*unknown \['heads'\]"):
        mixers.create("softmax", 8, heads=2)
    with pytest.raises(ValueError, match=r"num_heads: expected a divisor of dim=8"):
        mixers.create("softmax", 8, num_heads=3)


@pytest.mark.parametrize("info", mixers.available(), ids=lambda i: i.name)
def test_entry_records_the_module_that_defines_it_and_a_known_paper(info):
    module = importlib.import_module(info.module)
    assert getattr(module, info.cls.__name__) is info.cls
    assert inspect.getsourcefile(info.cls) == module.__file__
    assert info.paper == info.capabilities.paper and info.paper in PAPERS
    assert info.paper_slug == PAPERS[info.paper].slug


def test_every_mixer_lives_in_a_file_named_after_it_or_its_family():
    families = {"softmax_qknorm": "softmax", "combiner_fixed": "combiner", "combiner_axial": "combiner",
                "fit_local": "fit",
                **{n: "deconstructed_qk" for n in ("static_emb_qk", "rnd_emb_qk", "fixed_seq_qk", "rnd_table_qk")}}
    for info in mixers.available():
        assert info.module == f"attnlab.mixers.{families.get(info.name, info.name)}", info.name


def test_an_unknown_paper_id_is_refused():
    class Stray(TokenMixer):
        """A mixer claiming a paper that is not in the table."""

        capabilities = Capabilities(paper="P99")

    with pytest.raises(ValueError, match=r"capabilities.paper: expected an id P01..P32 or '', received 'P99'"):
        register("stray_test_mixer")(Stray)
    assert "stray_test_mixer" not in {i.name for i in mixers.available()}
