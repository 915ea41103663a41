"""Tasks by name (``task.name``): ``avfed tasks`` lists them."""

from __future__ import annotations

from avfed.registry import Registry
from avfed.tasks.base import Task

# a task factory takes the run's parts (avfed.tasks.parts.RunParts) plus its task.args
task_registry: Registry[Task] = Registry("task", injected=("parts",))
register_task = task_registry.register


def list_tasks() -> dict[str, str]:
    return task_registry.describe()
