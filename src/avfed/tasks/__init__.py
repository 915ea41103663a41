"""Kinds of training the engine runs; importing registers the built-ins."""

from avfed.registry import import_submodules
from avfed.tasks.base import ClientData, Task, TrainContext, TrainOutcome
from avfed.tasks.registry import list_tasks, register_task, task_registry

import_submodules(__name__, __path__)
import avfed.cardio.task  # noqa: E402,F401 - the cardionet task and the pulse_av source
import avfed.colorize.task  # noqa: E402,F401 - the vcgan task and its clip data sources

__all__ = ["ClientData", "Task", "TrainContext", "TrainOutcome", "list_tasks",
           "register_task", "task_registry"]
