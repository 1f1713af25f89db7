"""This engine's link to the other engines on the database, for the calls each owns:
controls and transfers sent to the owner, and the ones sent to this engine carried out.

Why: a hold asked of engine B for a call on engine A's Asterisk must reach A, and PostgreSQL
is the only coordinator (no cluster protocol of our own). Sending (:meth:`NodeLink.forward`):
a ``node_command`` row for the owner (NOTIFY wakes it), then the result is awaited — woken
by ``NOTIFY ctc_node_results``, and read every ``poll`` seconds anyway — for at most
``node.forward_timeout`` seconds. Then the command is withdrawn unless the owner took it
(it will never run: NodeUnavailable); a command the owner took is awaited one more timeout,
since it is being carried out.

Serving: the owner takes its pending commands when notified (and every ``tick`` seconds),
runs each in its own task through :class:`~engine.app.node_commands.CommandRunner` and
writes its result. Old command rows are deleted every 60 rounds. A failed round (PostgreSQL
away) is logged and the next wake-up or tick retries.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from engine.config.settings import NodeSettings
from engine.errors import NodeUnavailable, describe
from engine.lifecycle import cancel_tasks
from engine.periodic import Periodic
from engine.store.listener import Listener
from engine.store.node_commands import COMMANDS_CHANNEL, RESULTS_CHANNEL, PendingCommand
from engine.store.records import StoredSession
from engine.store.repositories import Store

__all__ = ["NodeLink", "RunCommand"]

log = structlog.get_logger(__name__)

RunCommand = Callable[[PendingCommand], Awaitable[Mapping[str, Any]]]
_PRUNE_EVERY = 60  # rounds


class NodeLink(Periodic):
    def __init__(
        self,
        store: Store,
        settings: NodeSettings,
        *,
        tick: float = 1.0,
        poll: float = 0.25,
    ) -> None:
        super().__init__("node_link", interval=tick, log_fields={"node": settings.name})
        self._store = store
        self._settings = settings
        self._poll = poll
        self._run_command: RunCommand | None = None
        self._answers: dict[int, asyncio.Event] = {}
        self._listener = Listener(
            store.db.url,
            {COMMANDS_CHANNEL: self._commands_notified, RESULTS_CHANNEL: self._result_notified},
            name="node-link",
        )
        self._running: set[asyncio.Task[None]] = set()
        self._rounds = 0  # completed rounds: old command rows are pruned every _PRUNE_EVERY
        self.served = 0  # commands carried out for other engines, for tests
        self.forwarded = 0  # commands sent to other engines

    @property
    def node(self) -> str:
        return self._settings.name

    def serve(self, run: RunCommand) -> None:
        """Carry out the commands sent to this engine with ``run`` (set once, at wiring)."""
        self._run_command = run

    # -- sending ------------------------------------------------------------------------

    async def forward(
        self, session: StoredSession, command: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        owner = session.node
        if owner is None:
            raise NodeUnavailable(f"session {session.id} has no owning node")
        timeout = self._settings.forward_timeout
        command_id = await self._store.node_commands.send(
            owner,
            session.tenant_id,
            session.id,
            command,
            sent_by=self.node,
            expires_in=timeout,
        )
        self.forwarded += 1
        answered = self._answers.setdefault(command_id, asyncio.Event())
        try:
            result = await self._await_result(command_id, answered, timeout)
            if result is None and not await self._store.node_commands.withdraw(command_id):
                # the owner took it in time: it is being carried out
                result = await self._await_result(command_id, answered, timeout)
        finally:
            self._answers.pop(command_id, None)
        if result is None or result.get("withdrawn"):
            log.warning("node_command.unanswered", node=owner, call_id=str(session.id))
            raise NodeUnavailable(
                f"node {owner} owns session {session.id} and did not answer within "
                f"{timeout:g} s (down or busy); nothing was done, retry later"
            )
        return result

    async def _await_result(
        self, command_id: int, answered: asyncio.Event, wait: float
    ) -> dict[str, Any] | None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            result = await self._store.node_commands.result(command_id)
            if result is not None:
                return result
            left = deadline - loop.time()
            if left <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(self._poll, left)):
                    await answered.wait()
            answered.clear()

    # -- serving ------------------------------------------------------------------------

    def _commands_notified(self, payload: str) -> None:
        if payload == self.node:
            self.wake()

    def _result_notified(self, payload: str) -> None:
        with contextlib.suppress(ValueError):
            event = self._answers.get(int(payload))
            if event is not None:
                event.set()

    async def _open(self) -> None:
        await self._listener.ensure()
        await super()._open()

    async def _close(self) -> None:
        await super()._close()
        await cancel_tasks(*self._running)
        await self._listener.close()

    async def run_once(self) -> None:
        """One round: listen again if the connection is down, take the pending commands,
        and every ``_PRUNE_EVERY`` rounds delete old command rows."""
        await self._listener.ensure()
        await self.take_pending()
        self._rounds += 1
        if self._rounds % _PRUNE_EVERY == 0:
            await self._store.node_commands.prune()

    async def take_pending(self) -> int:
        """Take the commands sent to this engine and start carrying them out; how many."""
        if self._run_command is None:
            return 0
        commands = await self._store.node_commands.take(self.node)
        for command in commands:
            job = asyncio.create_task(self._carry_out(command), name=f"node-command-{command.id}")
            self._running.add(job)
            job.add_done_callback(self._running.discard)
        return len(commands)

    async def _carry_out(self, command: PendingCommand) -> None:
        run = self._run_command
        if run is None:
            return
        result = await run(command)
        self.served += 1  # carried out; counted before the answer lets the sender go on
        try:
            await self._store.node_commands.answer(command.id, result)
        except Exception as exc:  # the sender times out and says the node did not answer
            log.warning("node_command.answer_failed", command_id=command.id, error=describe(exc))
