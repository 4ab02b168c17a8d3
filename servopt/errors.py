"""Errors a user can cause, each rendered by the CLI as one line and exit code 2.

Anything else that escapes is an internal error (exit code 1). Messages name the field
(a JSON path such as ``requests[3].prompt_tokens``) or the cause, never a traceback.
"""
from __future__ import annotations


class ServoptError(Exception):
    """Base of every error caused by the input or the environment, not by a bug."""

    exit_code = 2


class InputError(ServoptError):
    """A field of an instance, a trace or an option is missing, malformed or out of range."""

    def __init__(self, field: str, message: str):
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}" if field else message)


class InfeasibleError(ServoptError):
    """The instance has no feasible plan; the message says why when the reason is known."""


class SolverError(ServoptError):
    """The solver failed, or was asked for something it cannot do (unknown name, no interface)."""


class EnvironmentProblem(ServoptError):
    """Something the command needs is absent on this machine (no GPU, no torch, ...)."""
