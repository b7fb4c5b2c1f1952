"""Loading trained policies from run directories and checkpoints."""
from __future__ import annotations

from pathlib import Path

import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import load_checkpoint, resolve_checkpoint


def checkpoint_file(path: str | Path, which: str = "best") -> Path:
    """``best`` falls back to ``latest`` when a run has no best checkpoint yet."""
    try:
        return resolve_checkpoint(path, which)
    except MemarlError:
        if which != "best":
            raise
        return resolve_checkpoint(path, "latest")


def load_policy(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
                agent: str | None = None) -> torch.nn.Module:
    from memarl.agents import make_agent

    file = checkpoint_file(path, which)
    payload = load_checkpoint(file)
    if agent is not None and payload["agent"] != agent:
        raise MemarlError(f"{file} holds agent {payload['agent']!r}, not {agent!r}")
    policy = make_agent(payload["agent"], tuple(payload["obs_shape"]), payload["num_actions"],
                        **payload["agent_config"])
    try:
        policy.load_state_dict(payload["model"])
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        raise MemarlError(f"{file}: weights do not fit agent {payload['agent']!r} "
                          f"({first_line})") from None
    policy.to(device).eval()
    policy.checkpoint_info = {
        "file": str(file), "agent": payload["agent"], "env": payload["env"],
        "env_options": payload["env_options"], "update": payload["update"],
        "agent_steps": payload["agent_steps"],
    }
    return policy
