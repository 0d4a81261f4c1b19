"""Probe tasks that test whether an encoder reads where values sit in space (issue 13)."""

from .tasks import TASKS, ProbeTask, make_task, task_spec

__all__ = ["TASKS", "ProbeTask", "make_task", "task_spec"]
