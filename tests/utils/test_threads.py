"""attnlab.utils.threads: the thread count is set inside the block and restored after, also on error."""
import pytest
import torch

from attnlab.utils.threads import single_threaded, torch_threads


def test_torch_threads_sets_and_restores_even_on_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError):
        with torch_threads(1):
            raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_single_threaded_decorator():
    before = torch.get_num_threads()
    assert single_threaded(torch.get_num_threads)() == 1
    assert torch.get_num_threads() == before
