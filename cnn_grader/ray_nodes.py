"""One Ray task on each node: the checks that run before a class run fans out."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any


def run_on_each_node(ray, function: Callable, args: tuple, resource: str, least: float,
                     **options: Any) -> list:
    """``function(*args)`` as a Ray task with ``options``, pinned to each alive node that
    has at least ``least`` of ``resource``; their results in Ray's node order (empty
    where no node has it)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    remote = ray.remote(function)
    return ray.get([
        remote.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"],
                                                                          soft=False),
                       **options).remote(*args)
        for node in ray.nodes()
        if node.get("Alive") and node.get("Resources", {}).get(resource, 0) >= least])
