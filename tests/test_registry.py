"""Registries: versioned names, duplicates raise, unknown names list the known ones."""
import pytest

import memarl
from memarl.errors import MemarlError
from memarl.registry import AGENTS, ENVS, SUITES, Registry


def test_versioned_lookup_resolves_newest():
    registry = Registry("widget")
    registry.register("thing-v0", lambda **kw: ("v0", kw))
    registry.register("thing-v2", lambda **kw: ("v2", kw), size=3)
    assert registry.resolve("thing") == "thing-v2"
    assert registry.make("thing", colour="red") == ("v2", {"size": 3, "colour": "red"})
    assert registry.make("thing-v0") == ("v0", {})


def test_duplicate_name_raises():
    registry = Registry("widget")
    registry.register("thing-v0", dict)
    with pytest.raises(MemarlError, match="already registered"):
        registry.register("thing-v0", dict)


def test_unknown_name_lists_known_ones():
    with pytest.raises(MemarlError, match=r"unknown env 'nope'; known envs: .*bottleneck-v0"):
        ENVS.resolve("nope")
    with pytest.raises(MemarlError, match=r"known agents: .*srmt"):
        AGENTS.resolve("nope")
    with pytest.raises(MemarlError, match=r"known suites: .*bottleneck-test"):
        SUITES.resolve("nope")


def test_builtins_register_on_first_lookup_and_public_api():
    assert {"srmt", "rmt", "attention", "empty", "gru"} <= set(AGENTS.names())
    env = memarl.make("bottleneck", num_envs=3, seed=0)
    assert env.reset().shape == (3, 2, 3, 5, 5)
    parallel = memarl.make_parallel("bottleneck")
    assert parallel.possible_agents == ["agent_0", "agent_1"]
