"""The single METS writer: output files go into the METS here, in batches, saved atomically.

Workers never touch the METS. When a page task completes, the store records its output
files in an outbox in the same transaction; this writer takes them from there, adds them to
the METS it holds in memory, saves the METS atomically and only then marks them registered.
A crash between the save and the mark means they are added once more on the next run, with
`replace` semantics, so nothing is ever listed twice and nothing is lost. Before each save
the file system is synced, so the METS on disk never lists a file whose bytes a power loss
could still take away, however the files were written.

Saving costs time in proportion to the METS, so the writer saves at most every
`min_interval` seconds (1 s), and spends no more than about 5 % of its time saving.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ocrswarm.engine.files import FileLike, sync_filesystem
from ocrswarm.errors import OcrswarmError
from ocrswarm.formats.mets import Agent
from ocrswarm.formats.workspace import Workspace

log = logging.getLogger(__name__)

_SAVE_SHARE = 0.05  # at most about this share of the time goes into saving


class _FileEntry(FileLike, Protocol):
    """A file reference with the page it belongs to, as the METS needs it."""

    @property
    def page_id(self) -> str | None: ...


class _Registration(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def file(self) -> _FileEntry: ...


class Outbox(Protocol):
    """The part of the store the writer needs: what is to be registered, and marking it."""

    def pending_registrations(self, workspace_id: str, limit: int) -> Sequence[_Registration]: ...

    def mark_registered(self, registration_ids: Sequence[int]) -> None: ...


@dataclass(frozen=True, slots=True)
class StepAgent:
    """The mets:agent of one processing step, as OCR-D processors write it."""

    name: str  # "ocrd-swarm-recognize v0.1.0"
    otherrole: str  # the tool's first step, e.g. "recognition/text-recognition"
    notes: tuple[tuple[str, str], ...]  # (ocrd:option, value)
    output_file_grps: tuple[str, ...]

    @classmethod
    def for_step(
        cls,
        executable: str,
        version: str,
        otherrole: str,
        input_file_grps: Sequence[str],
        output_file_grps: Sequence[str],
        parameters: Mapping[str, object],
        page_selection: str | None,
    ) -> StepAgent:
        notes = (
            ("input-file-grp", ",".join(input_file_grps)),
            ("output-file-grp", ",".join(output_file_grps)),
            ("parameter", json.dumps(dict(parameters), ensure_ascii=False)),
            ("page-id", page_selection or ""),
        )
        return cls(f"{executable} v{version}", otherrole, notes, tuple(output_file_grps))

    def matches(self, agent: Agent) -> bool:
        return (agent.name, agent.otherrole, agent.notes) == (
            self.name,
            self.otherrole,
            self.notes,
        )


class MetsWriter:
    """Registers the outbox's files in `workspace.mets` and saves it, in batches."""

    def __init__(
        self,
        workspace: Workspace,
        outbox: Outbox,
        workspace_id: str,
        *,
        agents: Iterable[StepAgent] = (),
        min_interval: float = 1.0,
        batch_size: int = 20_000,
    ) -> None:
        self.workspace = workspace
        self._outbox = outbox
        self._workspace_id = workspace_id
        self._min_interval = min_interval
        self._batch_size = batch_size
        existing = workspace.mets.agents
        self._agents_due: dict[str, StepAgent] = {
            grp: agent
            for agent in agents
            if not any(agent.matches(present) for present in existing)
            for grp in agent.output_file_grps
        }
        self._next_save = 0.0
        self.registered = 0
        self.problems: list[str] = []  # files that could not be registered (processor bugs)

    def flush(self, *, force: bool = False) -> int:
        """Register what is pending, if a save is due (always when `force`); returns how
        many files were registered. With `force` the outbox is emptied completely."""
        if not force and time.monotonic() < self._next_save:
            return 0
        total = 0
        while True:
            batch = self._outbox.pending_registrations(self._workspace_id, self._batch_size)
            if not batch:
                break
            total += self._register(batch)
            if not force or len(batch) < self._batch_size:
                break
        return total

    def add_agents_for(self, file_grps: Collection[str]) -> None:
        """Add now the agents of the steps writing `file_grps` (saved with the next flush)."""
        for grp in file_grps:
            self._add_agent_of(grp)

    def save(self) -> None:
        """Save the METS now (e.g. after agents were added), its files synced first."""
        sync_filesystem(self.workspace.directory)
        self.workspace.save()

    def _register(self, batch: Sequence[_Registration]) -> int:
        mets = self.workspace.mets
        for registration in batch:
            file = registration.file
            self._add_agent_of(file.file_grp)
            try:
                mets.add_file(
                    file.file_grp,
                    file.file_id,
                    file.href,
                    file.mimetype,
                    file.page_id,
                    replace=True,
                )
            except OcrswarmError as error:
                message = f"cannot register {file.file_id} (page {file.page_id}): {error}"
                log.error("%s", message)
                self.problems.append(message)
        started = time.monotonic()
        self.save()
        finished = time.monotonic()
        self._outbox.mark_registered([registration.id for registration in batch])
        self._next_save = finished + max(self._min_interval, (finished - started) / _SAVE_SHARE)
        self.registered += len(batch)
        return len(batch)

    def _add_agent_of(self, file_grp: str) -> None:
        agent = self._agents_due.get(file_grp)
        if agent is None:
            return
        for grp in agent.output_file_grps:
            self._agents_due.pop(grp, None)
        self.workspace.mets.add_agent(
            agent.name,
            role="OTHER",
            otherrole=agent.otherrole,
            type="OTHER",
            othertype="SOFTWARE",
            notes=dict(agent.notes),
        )
