"""attnlab.models.registry: create and its errors, count_parameters, and what every entry records."""
from __future__ import annotations

import importlib
import inspect

import pytest
import torch

from attnlab import models
from attnlab.papers import PAPERS


def test_registry_create_and_errors():
    m = models.create("convit_tiny", img_size=16, num_classes=3)
    assert m(torch.randn(1, 3, 16, 16)).shape == (1, 3)
    with pytest.raises(KeyError, match="did you mean convit_tiny"):
        models.create("convit_tinyy")
    with pytest.raises(TypeError, match="convit_tiny"):
        models.create("convit_tiny", not_a_kwarg=1)


def test_count_parameters_counts_shared_tensors_once():
    lin = torch.nn.Linear(4, 4)
    net = torch.nn.Sequential(lin, lin)
    assert models.count_parameters(net) == 20


@pytest.mark.parametrize("info", models.available_info(), ids=lambda i: i.name)
def test_entry_records_the_module_that_defines_it_and_its_paper(info):
    module = importlib.import_module(info.module)
    assert getattr(module, info.name) is info.factory is models.available()[info.name]
    assert info.paper in PAPERS and info.paper_slug == PAPERS[info.paper].slug
    assert info.summary and info.summary == inspect.getdoc(info.factory).splitlines()[0]


def test_register_model_needs_a_known_paper():
    with pytest.raises(ValueError, match=r"paper: expected an id P01..P32, received 'P99'"):
        models.register_model("stray_test_model", paper="P99")
