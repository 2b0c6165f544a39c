"""Runs a scenario's timeline: each step waits for its condition (a time, another step, a
number of completed operations, a metric), then applies or clears a fault. Faults record
their own windows in the history; the timeline records which steps fired, and which could not
(a fault the target cannot suffer, a condition that never held), as `nemesis` events."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from harness.checks.prometheus import parse_prometheus
from harness.env.environment import Environment
from harness.faults.base import Fault, FaultError, UnsupportedFault
from harness.faults.registry import create_fault
from harness.history import History
from harness.scenario.model import Condition, Scenario, Step

NEMESIS = "nemesis"
POLL_S = 0.1


class Timeline:
    def __init__(self, scenario: Scenario, env: Environment, history: History) -> None:
        self.scenario = scenario
        self.env = env
        self.history = history
        self.faults: dict[str, Fault] = {}
        self.fired: dict[str, asyncio.Event] = {s.id: asyncio.Event() for s in scenario.timeline}
        self.problems: list[str] = []
        self._group: asyncio.TaskGroup | None = None

    async def run(self, started_at: float) -> None:
        """Every step in its own task, so a step waiting on a condition holds up no other; the
        scheduled clears in the same group, so cancelling the timeline cancels them too (none
        may clear a fault after the run has cleared them all)."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for step in self.scenario.timeline:
                group.create_task(self._step(step, started_at))

    async def _step(self, step: Step, started_at: float) -> None:
        if not await self._wait(step.when, started_at):
            self._note(step, "step_skipped", reason="its condition never held")
            return
        try:
            if step.fault is not None:
                fault = create_fault(step.fault, self.env)
                await fault.apply()
                self.faults[step.id] = fault
                self._note(step, "step_fired", fault=fault.describe())
                if step.for_s is not None:
                    assert self._group is not None, "steps run inside run()"
                    self._group.create_task(self._clear_later(step, fault, step.for_s))
            elif step.clear is not None:
                fault = self.faults.get(step.clear)  # type: ignore[assignment]
                if fault is not None and fault.active:
                    await fault.clear()
                self._note(step, "step_fired", cleared=step.clear)
        except UnsupportedFault as exc:
            self._note(step, "step_skipped", reason=str(exc))
        except FaultError as exc:
            self._note(step, "step_failed", reason=str(exc))
        finally:
            self.fired[step.id].set()

    async def _clear_later(self, step: Step, fault: Fault, after_s: float) -> None:
        await asyncio.sleep(after_s)  # the fault's scheduled length, not a synchronisation
        if fault.active:
            try:
                await fault.clear()
                self._note(step, "fault_cleared", fault=fault.describe())
            except FaultError as exc:
                self._note(step, "step_failed", reason=f"clear: {exc}")

    async def _wait(self, when: Condition, started_at: float) -> bool:
        loop = asyncio.get_running_loop()
        limit = when.timeout_s if when.timeout_s is not None else self.scenario.duration_s
        deadline = started_at + limit if when.at_s is None else None
        if when.at_s is not None:
            await asyncio.sleep(max(0.0, started_at + when.at_s - loop.time()))  # the schedule
            return True
        if when.after_step is not None:
            event = self.fired[when.after_step]
            assert deadline is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), max(0.0, deadline - loop.time()))
            if not event.is_set():
                return False
            await asyncio.sleep(when.delay_s)
            return True
        assert deadline is not None
        while loop.time() < deadline:
            if await self._holds(when):
                await asyncio.sleep(when.delay_s)
                return True
            await asyncio.sleep(POLL_S)  # polling a condition with a deadline
        return False

    async def _holds(self, when: Condition) -> bool:
        if when.ops_ok is not None:
            return sum(1 for op in self.history.ops if op.type == "ok") >= when.ops_ok
        if when.metric is not None and when.at_least is not None:
            try:
                response = await self.env.get_direct("/metrics", timeout_s=2.0)
            except Exception:
                return False
            series = parse_prometheus(response.text)
            value = sum(v for k, v in series.items() if k == when.metric or k.startswith(when.metric + "{"))
            return value >= when.at_least
        return False

    def _note(self, step: Step, kind: str, **data: Any) -> None:
        self.history.event(NEMESIS, kind, step=step.id, line=step.line, **data)
        if kind in ("step_skipped", "step_failed"):
            self.problems.append(f"step {step.id} (line {step.line}): {data.get('reason')}")
