"""The engine of a long-running server: one coordinator over all workspaces and jobs.

`ocrswarm run` drives one workflow job to its end; the server instead keeps one
coordinator running until it is stopped, claiming whatever page task is ready in any
workspace, with one METS writer per workspace made when first needed. A job counts as
finished for the outside world only once its outputs are in the METS on disk (`settled`):
a client that reads the METS after SUCCESS finds every file.

On start the leases of the previous server process are taken back (`expire_leases(inf)`):
the embedded store belongs to this one server, so whoever held them is dead (a `kill -9`
or a power loss). Stopping (SIGTERM) lets the workers finish their page, gives back every
lease and flushes the METS writers.

Distributed mode (a RabbitMQ URL, a shared PostgreSQL store): the dispatcher publishes
ready tasks to the processors' queues and takes back the leases of vanished workers (only
those that expired: remote workers are alive), the METS writers run in a thread of their
own, and the server's own workers, if any, consume the queues like any `ocrswarm worker`.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocrswarm.engine.brokertasks import BrokerTasks
from ocrswarm.engine.coordinator import Coordinator, CoordinatorOptions, Interrupted, TaskSource
from ocrswarm.engine.database import StoreError
from ocrswarm.engine.dispatch import Dispatcher
from ocrswarm.engine.metswriter import MetsWriter, StepAgent
from ocrswarm.engine.records import JobInfo, JobStatus
from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.store import Store
from ocrswarm.engine.tools import available_executables, step_agent
from ocrswarm.engine.workerregistry import WORKER_ALIVE_SECONDS
from ocrswarm.errors import OcrswarmError

log = logging.getLogger(__name__)

_SAVE_SHARE = 0.05  # at most about this share of the time goes into saving one METS
_MIN_FLUSH_SECONDS = 1.0
_WATCH_SECONDS = 0.25
_RESTART_SECONDS = 1.0  # pause before a coordinator that crashed is started again
_WRITER_SECONDS = 0.1  # distributed mode: how often the METS writers look for outputs
DATABASE_PATIENCE_SECONDS = 600.0  # how long workers wait for a database that went away

FinishedHook = Callable[[str, State], None]


class NoMetsWriting:
    """The METS flusher of a coordinator that writes no METS (a distributed worker's)."""

    def flush(self, *, force: bool = False) -> int:
        return 0


class WorkspaceWriters:
    """A METS writer per workspace, flushed together by the coordinator's loop.

    Each workspace's outbox is emptied completely when its save is due. A workspace with
    new jobs gets a writer that knows their steps' agents, each written with the first
    output of its step.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._known: set[str] = set()
        self._writers: dict[str, MetsWriter] = {}
        self._next_flush: dict[str, float] = {}
        self._urgent: set[str] = set()
        self._new_jobs: set[str] = set()  # workspaces whose writer lacks some jobs' agents
        self._agents: dict[str, StepAgent | None] = {}  # by job id; None: cannot be said

    def add(self, workspace_id: str) -> None:
        """Watch `workspace_id` for outputs to register, and the agents of its jobs as they
        are now (thread-safe; call it after submitting a job)."""
        with self._lock:
            self._known.add(workspace_id)
            self._new_jobs.add(workspace_id)

    def hurry(self, workspace_id: str) -> None:
        """Someone waits for this workspace's METS: flush it at the next chance."""
        with self._lock:
            if workspace_id in self._known:
                self._urgent.add(workspace_id)

    def writes(self, workspace_id: str) -> bool:
        """Whether this server writes the workspace's METS now (not one deleted, or one
        given up on after an error: its jobs' pending outputs will not come)."""
        with self._lock:
            return workspace_id in self._known

    def flush(self, *, force: bool = False) -> int:
        """Register pending outputs of every workspace whose save is due (all when `force`)."""
        with self._lock:
            known = sorted(self._known)
            urgent, self._urgent = self._urgent, set()
        total = 0
        for workspace_id in known:
            due = self._next_flush.get(workspace_id, 0.0)
            if not force and workspace_id not in urgent and time.monotonic() < due:
                continue
            total += self._flush_one(workspace_id)
        return total

    def _flush_one(self, workspace_id: str) -> int:
        began = time.monotonic()
        try:
            writer = self._current_writer(workspace_id)
            count = writer.flush(force=True)
        except StoreError as error:  # the database is away: the outputs wait for it
            log.warning("METS of workspace %s: %s; trying again", workspace_id, error)
            return 0
        except (OcrswarmError, OSError) as error:
            log.error("METS of workspace %s: %s; its outputs stay pending", workspace_id, error)
            with self._lock:
                self._known.discard(workspace_id)
            self._writers.pop(workspace_id, None)
            return 0
        spent = time.monotonic() - began
        self._next_flush[workspace_id] = time.monotonic() + max(
            _MIN_FLUSH_SECONDS, spent / _SAVE_SHARE
        )
        return count

    def _current_writer(self, workspace_id: str) -> MetsWriter:
        """The workspace's writer, made again when it has new jobs (their agents). A writer
        holds no METS: each save streams the one on disk, even one replaced by upload."""
        with self._lock:
            new_jobs = workspace_id in self._new_jobs
            self._new_jobs.discard(workspace_id)
        writer = self._writers.get(workspace_id)
        if writer is not None and not new_jobs:
            return writer
        mets_path = self._store.workspace(workspace_id).mets_path
        agents = [agent for job in self._store.jobs(workspace_id) if (agent := self._agent_of(job))]
        writer = MetsWriter(mets_path, self._store, workspace_id, agents=agents)
        self._writers[workspace_id] = writer
        return writer

    def _agent_of(self, job: JobInfo) -> StepAgent | None:
        """The agent of the job's step; None (logged once) if the tool cannot say its
        version: a missing agent must never keep outputs out of the METS."""
        if job.id not in self._agents:
            try:
                # No page selection: a job's pages are in the store, not in its request.
                self._agents[job.id] = step_agent(
                    job.executable, job.input_file_grps, job.output_file_grps, job.parameters
                )
            except Exception:
                log.exception("no mets:agent for job %s (%s)", job.id, job.executable)
                self._agents[job.id] = None
        return self._agents[job.id]


@dataclass(frozen=True, slots=True)
class _Watch:
    job_id: str
    workflow: bool
    hook: FinishedHook


class EngineService:
    """Runs every job of `store` on local workers until `stop`; see the module docstring."""

    def __init__(
        self,
        store: Store,
        options: CoordinatorOptions | None = None,
        *,
        queue_url: str | None = None,
        processors: Sequence[str] | None = None,
    ) -> None:
        """`queue_url`: distributed mode through this RabbitMQ (see the module docstring);
        `processors`: the queues the server's own workers consume (default: all it runs)."""
        self.store = store
        self._options = options or CoordinatorOptions()
        self.queue_url = queue_url
        self._processors = processors
        self._dispatcher: Dispatcher | None = None
        self.writers = WorkspaceWriters(store)
        self._stopping = threading.Event()
        self._coordinator: Coordinator | None = None
        self._coordinator_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._watches: list[_Watch] = []
        self._watch_lock = threading.Lock()

    def start(self) -> None:
        """Take back the dead predecessor's leases, register its outputs, start working."""
        self.store.migrate()
        if self.queue_url is None:
            taken_back = self.store.expire_leases(now=math.inf)
            if taken_back:
                log.info("took back %d page tasks of the previous server process", taken_back)
        for workspace_id in self._workspaces_with_jobs():
            self.writers.add(workspace_id)
        self.writers.flush(force=True)
        threads: list[tuple[Callable[[], None], str]] = [(self._watch, "job-watcher")]
        if self.queue_url is None or self._options.workers > 0:
            threads.append((self._coordinate, "coordinator"))
        if self.queue_url is not None:
            self._dispatcher = Dispatcher(self.store, self.queue_url)
            threads += [(self._dispatcher.run, "dispatcher"), (self._write_mets, "mets-writer")]
        for target, name in threads:
            thread = threading.Thread(target=target, name=f"ocrswarm-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Let the workers finish their page, give back every lease, flush the METS."""
        self._stopping.set()
        with self._coordinator_lock:
            if self._coordinator is not None:
                self._coordinator.stop()
        if self._dispatcher is not None:
            self._dispatcher.stop()
        for thread in self._threads:
            thread.join()
        self._threads.clear()

    def workers_alive(self) -> int:
        """How many worker processes are alive now (0 before start and after stop); in
        distributed mode with those of the registered `ocrswarm worker`s heard of lately."""
        with self._coordinator_lock:
            coordinator = self._coordinator
        local = 0 if coordinator is None else coordinator.workers_alive()
        if self.queue_url is None or self._stopping.is_set():
            return local
        now = time.time()
        remote = self.store.list_workers()
        return local + sum(w.capacity for w in remote if w.alive(now, WORKER_ALIVE_SECONDS))

    def add_workspace(self, workspace_id: str) -> None:
        """A job was submitted in `workspace_id`: its outputs go into its METS."""
        self.writers.add(workspace_id)
        if self._dispatcher is not None:
            self._dispatcher.wake()

    def on_finished(self, job_id: str, hook: FinishedHook, *, workflow: bool = False) -> None:
        """Call `hook(job_id, state)` once the job has finished and its outputs are in the
        METS (from a background thread)."""
        with self._watch_lock:
            self._watches.append(_Watch(job_id, workflow, hook))

    def settled(self, status: JobStatus) -> State:
        """The state to report: a finished job whose outputs are not yet all in the METS
        is still RUNNING. Decided by the outbox, never by comparing clocks: workers on other
        machines complete tasks with their own."""
        if (
            status.state in FINISHED
            and status.outputs_pending
            and self.writers.writes(status.workspace_id)
        ):
            self.writers.hurry(status.workspace_id)
            return State.RUNNING
        return status.state

    def settled_states(
        self, job_ids: Sequence[str] = (), workflow_job_ids: Sequence[str] = ()
    ) -> dict[str, State]:
        """The settled state of many processing and workflow jobs in one store read; ids
        not found are left out."""
        statuses = self.store.job_statuses(job_ids, workflow_job_ids)
        return {job_id: self.settled(status) for job_id, status in statuses.items()}

    def job_state(self, job_id: str) -> State:
        """A processing job's settled state."""
        state = self.settled_states([job_id]).get(job_id)
        return self.store.job(job_id).state if state is None else state  # unknown: raises

    def workflow_job_state(self, workflow_job_id: str) -> State:
        """A workflow job's settled state."""
        state = self.settled_states((), [workflow_job_id]).get(workflow_job_id)
        if state is None:
            return self.store.workflow_job(workflow_job_id).state  # unknown: raises
        return state

    # --- threads -------------------------------------------------------------------------

    def _coordinate(self) -> None:
        while not self._stopping.is_set():
            with self._coordinator_lock:
                if self._stopping.is_set():
                    return
                if self.queue_url is None:
                    coordinator = Coordinator(self.store, None, self.writers, self._options)
                else:  # its consumer thread starts here: only when it will run
                    coordinator = self._broker_coordinator(self.queue_url)
                self._coordinator = coordinator
            try:
                coordinator.run()
            except Interrupted:
                return
            except Exception:
                log.exception("the coordinator failed; starting it again")
                self._stopping.wait(_RESTART_SECONDS)

    def _broker_coordinator(self, queue_url: str) -> Coordinator:
        """Local workers that consume RabbitMQ like any `ocrswarm worker` (METS writing is
        the mets-writer thread's)."""
        store = self.store.patient(DATABASE_PATIENCE_SECONDS)
        source: TaskSource = BrokerTasks(
            store,
            queue_url,
            self._processors or available_executables(),
            prefetch=self._options.workers,
        )
        return Coordinator(store, None, NoMetsWriting(), self._options, source=source)

    def _write_mets(self) -> None:
        while not self._stopping.wait(_WRITER_SECONDS):
            try:
                self.writers.flush()
            except Exception:
                log.exception("the METS writers failed; going on")
        self.writers.flush(force=True)

    def _watch(self) -> None:
        while not self._stopping.wait(_WATCH_SECONDS):
            self._check_watches()

    def _check_watches(self) -> None:
        """Call the hooks of the watched jobs that have finished. One read of the store for
        all of them (a few queries, however many jobs are watched); a job that no longer
        exists ends its watch; a passing database problem is tried again next time."""
        with self._watch_lock:
            watches = list(self._watches)
        if not watches:
            return
        try:
            statuses = self.store.job_statuses(
                [watch.job_id for watch in watches if not watch.workflow],
                [watch.job_id for watch in watches if watch.workflow],
            )
        except Exception:
            log.exception(
                "cannot read the state of the %d watched jobs; trying again", len(watches)
            )
            return
        over: set[int] = set()
        for watch in watches:
            status = statuses.get(watch.job_id)
            if status is not None:
                state = self.settled(status)
                if state not in FINISHED:
                    continue
                try:
                    watch.hook(watch.job_id, state)
                except Exception:
                    log.exception("job-finished hook of %s failed", watch.job_id)
            over.add(id(watch))
        if over:
            with self._watch_lock:
                self._watches = [watch for watch in self._watches if id(watch) not in over]

    def _workspaces_with_jobs(self) -> set[str]:
        return {job.workspace_id for job in self.store.jobs()}
