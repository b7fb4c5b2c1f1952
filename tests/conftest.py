"""Test markers: ``gpu`` tests skip without CUDA; ``slow`` tests are deselected in CI.

Tests run torch on one intra-op thread: their tensors are tiny, and on a loaded 2-core machine
a thread pool makes them many times slower (training runs choose their own thread count).
"""
import pytest


def pytest_configure(config):
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    try:
        import torch
        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
