"""State comparisons shared by the agent tests."""
import torch


def assert_state_equal(s1: dict, s2: dict, atol: float = 0.0) -> None:
    """Same keys; float entries within ``atol``, integer and bool entries exactly equal."""
    assert s1.keys() == s2.keys()
    for key in s1:
        if s1[key].is_floating_point():
            torch.testing.assert_close(s1[key], s2[key], atol=atol, rtol=0, msg=key)
        else:
            assert torch.equal(s1[key], s2[key]), key
