"""Loading trained policies from run directories and checkpoints, and the env they were trained on.

``which`` is ``best`` (falls back to latest when best.pt is missing or unreadable), ``latest``
(the newest checkpoint that loads; unreadable newer ones are skipped with a warning) or a
checkpoint file (a path, or a file name inside RUN/checkpoints).

A loaded policy carries ``policy.checkpoint_info``, a dict that describes the checkpoint:

* ``file``, ``agent``, ``update``, ``agent_steps``: the file and its counters
* ``env``, ``env_options``: the env as the user named it and the options they gave
* ``env_id``: the registered env id (``pogema-lmapf-v0``)
* ``env_config``: every field of the training env's config, after defaults (JSON-able);
  :func:`training_env_config` turns it into keyword arguments for ``memarl.make``
* ``env_config_source``: ``"checkpoint"``, or for a checkpoint written before checkpoints
  recorded their env config, ``"resolved from env_options and today's defaults"``
* ``obs_shape``, ``num_actions``, ``agent_config``: what the policy was built with
* ``score_metric``: the episode metric that picked best.pt (None when the checkpoint predates
  its recording)
* ``format``: the checkpoint format number
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from memarl.errors import MemarlError
from memarl.train.checkpoint import checkpoint_env_config, load_error_summary, load_run_checkpoint

RUN_FIELDS = ("num_envs", "seed")
"""env config fields that belong to a run rather than to the task: :func:`training_env_config`
leaves them to whoever builds the env"""


def checkpoint_file(path: str | Path, which: str = "best") -> Path:
    """The checkpoint file :func:`load_policy` would load for ``path`` and ``which``."""
    return load_run_checkpoint(path, which)[0]


def load_policy(path: str | Path, which: str = "best", device: str | torch.device = "cpu",
                agent: str | None = None) -> torch.nn.Module:
    from memarl.agents import make_agent

    file, payload = load_run_checkpoint(path, which)
    if agent is not None and payload["agent"] != agent:
        raise MemarlError(f"{file} holds agent {payload['agent']!r}, not {agent!r}")
    # before the weights: a checkpoint that cannot say what it was trained on is refused whole
    env_id, env_config, source = checkpoint_env_config(payload, file)
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
        "env_id": env_id, "env_config": env_config, "env_config_source": source,
        "obs_shape": list(payload["obs_shape"]), "num_actions": payload["num_actions"],
        "agent_config": dict(payload["agent_config"]),
        "score_metric": payload.get("score_metric"), "format": payload["format"],
    }
    return policy


def training_env_config(info: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments that rebuild a checkpoint's training env:
    ``memarl.make(info["env_id"], num_envs=..., seed=..., **training_env_config(info))``.

    ``info`` is a ``policy.checkpoint_info``. Every config field but :data:`RUN_FIELDS`, so that
    no default of today replaces a value the policy was trained with.
    """
    return {key: value for key, value in info["env_config"].items() if key not in RUN_FIELDS}


def observation_fields(env_id: str) -> tuple[str, ...]:
    """The config fields of env ``env_id`` that shape its observation (the env class declares
    them as ``observation_fields``): an env built for evaluation or rendering takes these from
    the checkpoint."""
    from memarl.registry import ENVS

    return tuple(getattr(ENVS.get(env_id).load(), "observation_fields", ()))