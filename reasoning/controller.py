"""What the core knows of a search controller: a name, what it needs, and one verb.

The runner, the API and the record writer work against this protocol only, so the core never
imports `search/` (see docs/adding-a-controller.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from reasoning.context import Context
    from reasoning.outcome import Outcome
    from reasoning.types import Problem


@runtime_checkable
class Controller(Protocol):
    """A search controller.

    `name` is its config name (`search=<name>` on the CLI, the `search` field of every result
    line). `verifier_use` says what the controller needs a verifier for, or is None when it
    runs without one; the runner refuses to start without a verifier when it is set, and
    names that reason.
    """

    name: ClassVar[str]

    @property
    def verifier_use(self) -> str | None: ...

    async def run(self, problem: Problem, ctx: Context) -> Outcome: ...


def controller_name(controller: object) -> str:
    """The config name of `controller` (its class name for objects that do not declare one)."""
    name = getattr(controller, "name", None)
    return name if isinstance(name, str) else type(controller).__name__
