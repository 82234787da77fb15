"""Named exception classes, in one small module (house style rule 14).

Every error a user can cause carries a sentence that says what was wrong and how to fix it;
the CLI prints that sentence as one line and exits with code 2.
"""

from __future__ import annotations

from typing import Any


class ToolgymError(Exception):
    """Base class of every error toolgym raises on purpose."""


class ConfigError(ToolgymError, ValueError):
    """A configuration value or argument is invalid."""


class UnknownNameError(ToolgymError, KeyError):
    """A family, env id, task id, policy or verifier name is not registered.

    The message lists the closest registered names.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DuplicateRegistrationError(ToolgymError):
    """A name was registered twice."""


class DatasetError(ToolgymError):
    """A dataset file is missing, corrupt, or not a toolgym dataset."""


class CheckpointError(ToolgymError):
    """A checkpoint is missing, truncated, corrupt or does not match its config."""


class TrainingDivergedError(ToolgymError, ArithmeticError):
    """A training run's loss, gradient norm, held-out loss or weights became NaN or infinite.

    Raised at the first such step, before anything of that step is saved or logged; the message
    names the step and the value and suggests a lower learning rate.
    """


class ReferenceSolutionError(ToolgymError):
    """A task's reference solution failed: a synthesis bug, never a warning."""


class WorldDataError(ToolgymError, TypeError):
    """A family's world data (``world.to_json()``) is not JSON that round-trips exactly.

    A world is data (DESIGN.md): datasets store it as JSON and envs rebuild worlds from it, so
    sets, objects, non-string keys and NaN or infinite floats are refused (a ``TypeError``, as
    the JSON encoder's own error was). The message names the family, where and what.
    """


class ExecutorError(ToolgymError):
    """A worker of an executor died (killed, out of memory): the run stops, its committed batches stay."""


class EpisodeLost(ToolgymError):
    """An episode's env was lost (its Ray actor died, and again on the retry): the episode is dropped.

    Runners leave such an episode out of their results and count it; it is never scored 0.
    """


class SandboxError(ToolgymError):
    """The sandbox itself failed (not the code inside it)."""


class EndpointError(ToolgymError):
    """A model endpoint (OpenAI-compatible server) is unreachable, timed out, or refused the request.

    Raised after the client's bounded retries; the message names the endpoint, the model and the
    cause (e.g. that the model does not support tool calls).
    """


def one_line(exc: Any) -> str:
    """A pydantic ValidationError as one sentence: ``field: message; field: message``."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return " ".join(str(exc).split())
    parts = []
    for e in errors()[:3]:
        where = ".".join(str(x) for x in e["loc"])
        parts.append(f"{where}: {e['msg']}" if where else e["msg"])
    return "; ".join(parts)
