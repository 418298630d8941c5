"""RabbitMQ deliveries as a coordinator's task source (`ocrswarm worker`, and a server's own
workers in distributed mode).

A message names a page task (amqp.TASK_ID_HEADER); the coordinator claims that task by id
in the shared store (`Store.claim_tasks`), which hands out the same self-contained lease as
an embedded claim. A message whose task cannot be claimed — done already, cancelled, held
by a live lease, not due yet — is acknowledged and dropped: that is how a redelivered
message of a finished page costs nothing. Everything else is acknowledged only once the
store holds the task's outcome: completed, failed with a retry ahead (the dispatcher sends
it again after the backoff), or given back; a task that failed for good is rejected
without requeueing, so its message ends in the processor's dead-letter queue.

The broker's consumer timeout (30 minutes by default) closes a channel that holds a
message longer: a claimed task's message is therefore acknowledged early once held for
`ack_deadline`, after which its lease in the store alone guards it (a worker that dies
then loses the lease, and the dispatcher sends the task again).

pika's connection is not thread-safe, so it lives in a thread of its own (`_Feed`): it
receives messages into a buffer and wakes the coordinator through a pipe; acks and rejects
are handed to it with pika's one thread-safe call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ocrswarm.engine.amqp import Consumer, Delivery
from ocrswarm.engine.records import TaskLease
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store

log = logging.getLogger(__name__)

ACK_DEADLINE_SECONDS = 20 * 60.0  # below RabbitMQ's default consumer timeout of 30 minutes
_POLL_SECONDS = 0.25


@dataclass(slots=True)
class _Held:
    delivery: Delivery | None  # None once acknowledged early (ack deadline)
    worker_id: str
    since: float


class BrokerTasks:
    """The coordinator's TaskSource over RabbitMQ; see the module docstring."""

    def __init__(
        self,
        store: Store,
        url: str,
        queues: Sequence[str],
        *,
        prefetch: int,
        ack_deadline: float = ACK_DEADLINE_SECONDS,
        prepare: Callable[[TaskLease], TaskLease] | None = None,
    ) -> None:
        """`prepare`: applied to every claimed lease before a worker gets it (where this
        machine finds the files: a path map, or a download by HTTP file transfer)."""
        self._store = store
        self._prepare = prepare
        self._feed = _Feed(Consumer(url, queues, prefetch=prefetch))
        self._ack_deadline = ack_deadline
        self._held: dict[str, _Held] = {}  # by lease token
        self._next_deadline_check = 0.0
        self.dropped = 0  # messages whose task was not claimable (done, cancelled, …)
        self._feed.start()

    @property
    def wake_handle(self) -> int:
        """A file descriptor that becomes readable when messages arrive."""
        return self._feed.wake_fd

    @property
    def connected(self) -> bool:
        return self._feed.consumer.connected

    def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[TaskLease]:
        """Claim the tasks of up to `limit` messages that arrived; drop the unclaimable."""
        deliveries = self._feed.take(limit)
        if not deliveries:
            return []
        wanted: dict[int, Delivery] = {}
        held_ids = {int(token.partition(".")[0]) for token in self._held}
        for delivery in deliveries:
            if delivery.task_id is None:
                log.warning("a message in %s names no ocrswarm task; dead-lettered", delivery.queue)
                self._feed.settle(delivery, ack=False)
            elif delivery.task_id in wanted or delivery.task_id in held_ids:
                self._drop(delivery)  # a duplicate of a message we hold
            else:
                wanted[delivery.task_id] = delivery
        if not wanted:
            return []
        try:
            leases = self._store.claim_tasks(worker_id, list(wanted), lease_seconds=lease_seconds)
        except BaseException:
            self._feed.give_back(list(wanted.values()))
            raise
        now = time.monotonic()
        for lease in leases:
            self._held[lease.token] = _Held(wanted.pop(lease.task_id), worker_id, now)
        for delivery in wanted.values():
            self._drop(delivery)
        if self._prepare is not None:
            leases = [self._prepare(lease) for lease in leases]
        return leases

    def _drop(self, delivery: Delivery) -> None:
        self.dropped += 1
        self._feed.settle(delivery, ack=True)

    def settled(self, token: str, state: State) -> None:
        """The store holds the task's outcome: acknowledge its message, or dead-letter it
        when the task FAILED for good."""
        held = self._held.pop(token, None)
        if held is not None and held.delivery is not None:
            self._feed.settle(held.delivery, ack=state is not State.FAILED)

    def released(self, worker_id: str) -> None:
        """Every lease of `worker_id` was given back in the store: acknowledge their
        messages (the dispatcher sends those tasks again)."""
        for token in [t for t, held in self._held.items() if held.worker_id == worker_id]:
            self.settled(token, State.QUEUED)

    def want(self, tasks: int) -> None:
        """How many messages the coordinator would like to hold: the prefetch."""
        self._feed.set_prefetch(max(1, tasks))

    def poll(self) -> bool:
        """Whether messages arrived since the last call; also keeps the ack deadline."""
        now = time.monotonic()
        if now >= self._next_deadline_check:
            self._next_deadline_check = now + 10.0
            for held in self._held.values():
                if held.delivery is not None and now - held.since >= self._ack_deadline:
                    self._feed.settle(held.delivery, ack=True)
                    held.delivery = None
        return self._feed.drain_wake()

    def close(self) -> None:
        """Stop consuming: messages not acknowledged go back to their queues."""
        self._feed.stop()


class _Feed(threading.Thread):
    """The thread that owns the pika connection (see the module docstring)."""

    def __init__(self, consumer: Consumer) -> None:
        super().__init__(name="ocrswarm-amqp-consumer", daemon=True)
        self.consumer = consumer
        self._buffer: deque[Delivery] = deque()
        self._lock = threading.Lock()
        self._requests: queue.SimpleQueue[tuple[Delivery, bool]] = queue.SimpleQueue()
        self._prefetch: int | None = None
        self._serving_due = threading.Event()  # a call of _serve_requests is on its way
        self._stopping = threading.Event()
        self.wake_fd, self._wake_w = os.pipe()
        os.set_blocking(self.wake_fd, False)
        os.set_blocking(self._wake_w, False)

    def run(self) -> None:
        try:
            while not self._stopping.is_set():
                prefetch, self._prefetch = self._prefetch, None
                if prefetch is not None:
                    self.consumer.set_prefetch(prefetch)
                try:
                    self._serve_requests()
                    arrived = self.consumer.poll(_POLL_SECONDS)
                except Exception:  # never let the feed die: reconnect instead
                    log.exception("the RabbitMQ consumer failed; connecting again")
                    self.consumer.close()
                    self._stopping.wait(1.0)
                    continue
                if arrived:
                    with self._lock:
                        self._buffer.extend(arrived)
                    self._wake()
        finally:
            self._serve_requests()
            with self._lock:
                self._buffer.clear()
            self.consumer.close()

    def take(self, limit: int) -> list[Delivery]:
        with self._lock:
            return [self._buffer.popleft() for _ in range(min(limit, len(self._buffer)))]

    def give_back(self, deliveries: Sequence[Delivery]) -> None:
        """Put taken messages back in front of the buffer (their claim failed)."""
        with self._lock:
            self._buffer.extendleft(reversed(deliveries))

    def settle(self, delivery: Delivery, *, ack: bool) -> None:
        """Acknowledge (`ack`) or dead-letter a message, soon, in the feed's thread. The
        settlements of a batch of completions travel together: one wake-up of the feed,
        mostly one ack (see Consumer.settle)."""
        self._requests.put((delivery, ack))
        if not self._serving_due.is_set():
            self._serving_due.set()
            if not self.consumer.call_threadsafe(self._serve_requests):
                self._serving_due.clear()  # no connection now: the feed's loop serves them

    def set_prefetch(self, prefetch: int) -> None:
        self._prefetch = prefetch

    def drain_wake(self) -> bool:
        try:
            return bool(os.read(self.wake_fd, 4096))
        except BlockingIOError:
            return False

    def stop(self) -> None:
        self._stopping.set()
        self.consumer.call_threadsafe(lambda: None)
        self.join(timeout=30)
        for fd in (self.wake_fd, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.write(self._wake_w, b"!")

    def _serve_requests(self) -> None:
        """Runs in the feed's thread only (inside `poll` when called back)."""
        self._serving_due.clear()
        acks: list[Delivery] = []
        dead: list[Delivery] = []
        while True:
            try:
                delivery, ack = self._requests.get_nowait()
            except queue.Empty:
                break
            (acks if ack else dead).append(delivery)
        if acks or dead:
            self.consumer.settle(acks, dead)
