"""The single METS writer: output files go into the METS here, in batches, saved atomically.

Workers never touch the METS. When a page task completes, the store records its output
files in an outbox in the same transaction; this writer takes them from there in batches,
streams the METS on disk through `MetsAppender` with the batch spliced in (each file in its
fileGrp in page order, however the pages finished), renames the result into place and only
then marks them registered. A crash between the save and the mark means they are added once
more on the next run, with `replace` semantics, so nothing is ever listed twice and nothing
is lost. Before each save the file system is synced, so the METS on disk never lists a file
whose bytes a power loss could still take away, however the files were written.

The METS on disk is the truth: the writer holds one batch and a small index per page, never
the document, so its memory does not grow with the pages of a job (the batch is at most
`batch_size` files). Saving costs time in proportion to the METS, so the writer saves at
most every `min_interval` seconds (1 s), and spends no more than about 5 % of its time saving.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ocrswarm.engine.files import sync_filesystem
from ocrswarm.formats.mets import Agent
from ocrswarm.formats.metsstream import FileEntry, MetsAppender

log = logging.getLogger(__name__)

_SAVE_SHARE = 0.05  # at most about this share of the time goes into saving


class _Registration(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def file(self) -> FileEntry: ...


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

    def as_agent(self) -> Agent:
        return Agent(self.name, "OTHER", "OTHER", "SOFTWARE", self.otherrole, self.notes)


class MetsWriter:
    """Registers the outbox's files in the METS at `mets_path` and saves it, in batches."""

    def __init__(
        self,
        mets_path: Path,
        outbox: Outbox,
        workspace_id: str,
        *,
        agents: Sequence[StepAgent] = (),
        min_interval: float = 1.0,
        batch_size: int = 10_000,
    ) -> None:
        self.mets_path = Path(mets_path)
        self._appender = MetsAppender(self.mets_path)
        self._outbox = outbox
        self._workspace_id = workspace_id
        self._min_interval = min_interval
        self._batch_size = batch_size
        # The index of the pages now, before the first batch waits for it; and the agents
        # the METS has.
        outline = self._appender.read_index([g for a in agents for g in a.output_file_grps])
        self._agents_due = {
            grp: agent
            for agent in agents
            if not any(agent.matches(present) for present in outline.agents)
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

    def _register(self, batch: Sequence[_Registration]) -> int:
        steps = self._agents_for(batch)
        sync_filesystem(self.mets_path.parent)
        started = time.monotonic()
        rejected = self._appender.add(
            [registration.file for registration in batch],
            agents=[step.as_agent() for step in steps],
        )
        finished = time.monotonic()
        for step in steps:
            for grp in step.output_file_grps:
                self._agents_due.pop(grp, None)
        for entry in rejected:
            message = f"cannot register {entry.file_id} (page {entry.page_id}): {entry.reason}"
            log.error("%s", message)
            self.problems.append(message)
        self._outbox.mark_registered([registration.id for registration in batch])
        self._next_save = finished + max(self._min_interval, (finished - started) / _SAVE_SHARE)
        self.registered += len(batch)
        return len(batch)

    def _agents_for(self, batch: Sequence[_Registration]) -> list[StepAgent]:
        """The agents of the steps whose first outputs are in `batch` and whose agent the
        METS does not have yet."""
        found: dict[int, StepAgent] = {}
        for registration in batch:
            agent = self._agents_due.get(registration.file.file_grp)
            if agent is not None:
                found.setdefault(id(agent), agent)
        return list(found.values())
