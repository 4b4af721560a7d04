"""The process's one agent, created on first use from the environment.

The sampler entry point, the configurator and :func:`otel_adaprof.configure` all
meet here, so they share one set of live params.

    >>> get_agent() is get_agent()
    True
"""

from __future__ import annotations

import threading

from otel_adaprof.instrumentation.agent import Agent
from otel_adaprof.instrumentation.settings import AgentSettings

_AGENT: Agent | None = None
_LOCK = threading.Lock()


def get_agent(settings: AgentSettings | None = None) -> Agent:
    """The agent of this process (``settings`` apply only when it is first created)."""
    global _AGENT
    with _LOCK:
        if _AGENT is None:
            _AGENT = Agent(settings or AgentSettings.from_env())
        return _AGENT


def reset_agent() -> None:
    """Stop and forget the agent (for tests that build several in one process)."""
    global _AGENT
    with _LOCK:
        if _AGENT is not None:
            _AGENT.stop()
        _AGENT = None
