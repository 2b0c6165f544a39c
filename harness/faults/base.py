"""What every fault is: a kind, a target, validated parameters, apply() and clear().

A fault records its window in the run's history: the start just before its effect begins, the
end once clear() has taken it away, so the window covers the whole time the fault could be
felt. apply() twice or clear() before apply() are mistakes of the caller and say so.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar

from harness.faults.params import Param, validate_params
from harness.history import FaultWindow, History

if TYPE_CHECKING:
    from harness.env.environment import Environment


class FaultError(RuntimeError):
    """A fault could not be applied or cleared; the message names the fault and the cause."""


class FaultSpecError(ValueError):
    """A fault description is invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


class UnsupportedFault(FaultError):
    """The environment cannot cause this fault (e.g. SIGKILL on an external target)."""


class Fault(abc.ABC):
    """Base of every fault kind. Subclasses set `kind`, `summary`, `params` and `targets`."""

    kind: ClassVar[str]
    family: ClassVar[str]  # network, s3, process, failpoint
    summary: ClassVar[str]
    params: ClassVar[tuple[Param, ...]]
    target_param: ClassVar[Param]

    def __init__(self, env: Environment, spec: Mapping[str, Any]) -> None:
        values, errors = validate_params(self.kind, (self.target_param, *self.params), spec)
        errors += self.cross_check(values)
        if errors:
            raise FaultSpecError(errors)
        self.env = env
        self.target: str = values.pop(self.target_param.name)
        self.values: dict[str, Any] = values
        self.window: FaultWindow | None = None

    @classmethod
    def cross_check(cls, values: Mapping[str, Any]) -> list[str]:
        """Constraints between parameters; a list of errors."""
        return []

    @property
    def history(self) -> History:
        return self.env.history

    @property
    def observable(self) -> bool:
        """Whether this fault's effect can be a failure, not only a delay (recorded into its
        window: a delay widens a check's bound, it excuses no miss). Subclasses that only slow
        things down say False."""
        return True

    @property
    def active(self) -> bool:
        return self.window is not None and self.window.end is None

    def describe(self) -> str:
        params = ", ".join(f"{k}={v}" for k, v in self.values.items() if v is not None)
        return f"{self.kind} on {self.target}" + (f" ({params})" if params else "")

    async def apply(self) -> None:
        if self.active:
            raise FaultError(f"{self.describe()} is already applied")
        self.window = self.history.fault_started(
            self.kind, self.target, self.values, family=self.family, observable=self.observable
        )
        try:
            await self._apply()
        except FaultError:
            self.history.fault_ended(self.window)
            raise
        except Exception as exc:
            self.history.fault_ended(self.window)
            raise FaultError(f"applying {self.describe()} failed: {exc}") from exc
        except BaseException:
            self.history.fault_ended(self.window)
            raise
        self.env.fault_applied(self)

    async def clear(self) -> None:
        if not self.active or self.window is None:
            raise FaultError(f"{self.describe()} is not applied")
        try:
            await self._clear()
        except FaultError:
            raise
        except Exception as exc:
            raise FaultError(f"clearing {self.describe()} failed: {exc}") from exc
        finally:
            self.history.fault_ended(self.window)
            self.env.fault_cleared(self)

    @abc.abstractmethod
    async def _apply(self) -> None: ...

    @abc.abstractmethod
    async def _clear(self) -> None: ...

    async def __aenter__(self) -> Fault:
        await self.apply()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.active:
            await self.clear()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.describe()}>"
