"""Loading trained policies from run directories and checkpoints.

``which`` is ``best`` (falls back to latest when best.pt is missing or unreadable), ``latest``
(the newest checkpoint that loads; unreadable newer ones are skipped with a warning) or a
checkpoint file (a path, or a file name inside RUN/checkpoints).
"""
from __future__ import annotations

from pathlib import Path

import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import load_error_summary, load_run_checkpoint


def checkpoint_file(path: str | Path, which: str = "best") -> Path:
    """The checkpoint file :func:`load_policy` would load for ``path`` and ``which``."""
    return load_run_checkpoint(path, which)[0]


def load_policy(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
                agent: str | None = None) -> torch.nn.Module:
    from memarl.agents import make_agent

    file, payload = load_run_checkpoint(path, which)
    if agent is not None and payload["agent"] != agent:
        raise MemarlError(f"{file} holds agent {payload['agent']!r}, not {agent!r}")
    policy = make_agent(payload["agent"], tuple(payload["obs_shape"]), payload["num_actions"],
                        **payload["agent_config"])
    try:
        policy.load_state_dict(payload["model"])
    except RuntimeError as error:
        raise MemarlError(f"{file}: weights do not fit agent {payload['agent']!r} "
                          f"({load_error_summary(error)})") from None
    policy.to(device).eval()
    policy.checkpoint_info = {
        "file": str(file), "agent": payload["agent"], "env": payload["env"],
        "env_options": payload["env_options"], "update": payload["update"],
        "agent_steps": payload["agent_steps"],
    }
    return policy
