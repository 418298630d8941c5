"""The one place that speaks AMQP (RabbitMQ, through pika): connections, queues, messages.

Topology, as OCR-D's processing server has it: one durable queue per processor, named
exactly after its executable (`ocrd-tesserocr-recognize`). Ours also carry a dead-letter
exchange: a message a worker rejects (its task failed for good) goes through the durable
direct exchange `ocrswarm.dead` to the durable queue `<processor>.dead`, where an operator
can look at it. Messages are JSON and persistent. The dispatcher's messages are published
in batches, each one AMQP transaction: at the commit RabbitMQ takes responsibility for the
whole batch (written to disk, so it survives a broker restart) in one round trip, where a
publisher confirm per message cost a round trip each. Result messages, one at a time, are
published with publisher confirms.

A processing message's body follows OCR-D's processing-message schema exactly (its
`additionalProperties` is false); our own task id travels in the AMQP `message_id`
property and the attempt number in a header, so a body stays valid for OCR-D tools.

pika's BlockingConnection is not thread-safe: every object here belongs to the thread that
made it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection

from ocrswarm.errors import OcrswarmError, UsageError

log = logging.getLogger(__name__)
logging.getLogger("pika").setLevel(logging.WARNING)  # it logs every connection step at INFO

DEAD_LETTER_EXCHANGE = "ocrswarm.dead"
HEARTBEAT_SECONDS = 30
CONNECT_TIMEOUT_SECONDS = 10.0
JSON_TYPE = "application/json"
TASK_ID_HEADER = "ocrswarm-task-id"
ATTEMPT_HEADER = "ocrswarm-attempt"
_PERSISTENT = pika.DeliveryMode.Persistent

# Everything pika raises when the broker or the network goes away.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    pika.exceptions.AMQPError,
    OSError,
)


class BrokerError(OcrswarmError):
    """RabbitMQ cannot be reached, or refused what was asked of it."""


class PublishError(BrokerError):
    """Publishing stopped part-way: the first `published` messages were confirmed."""

    def __init__(self, message: str, published: int) -> None:
        super().__init__(message)
        self.published = published


def dead_letter_queue(queue: str) -> str:
    """The queue where the messages of `queue` end after the retry cap."""
    return f"{queue}.dead"


def redact(url: str) -> str:
    """`url` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def connection_parameters(url: str) -> pika.URLParameters:
    """pika's parameters for an `amqp://` or `amqps://` URL, heartbeats on.

    Query options in the URL (`?heartbeat=60`) take precedence over our defaults."""
    parts = urlsplit(url)
    if parts.scheme not in ("amqp", "amqps"):
        raise UsageError(f"not a RabbitMQ URL: {redact(url)!r} (expected amqp://USER:PASS@HOST/)")
    try:
        parameters = pika.URLParameters(url)
    except Exception as error:
        raise UsageError(f"not a RabbitMQ URL: {redact(url)!r} ({error})") from None
    if "heartbeat" not in parts.query:
        parameters.heartbeat = HEARTBEAT_SECONDS
    if "blocked_connection_timeout" not in parts.query:
        parameters.blocked_connection_timeout = 60
    if "socket_timeout" not in parts.query:
        parameters.socket_timeout = CONNECT_TIMEOUT_SECONDS
    parameters.connection_attempts = 1
    return parameters


def connect(url: str) -> BlockingConnection:
    """A blocking connection to the broker at `url`; BrokerError when it is unreachable."""
    parameters = connection_parameters(url)
    try:
        return BlockingConnection(parameters)
    except CONNECTION_ERRORS as error:
        raise BrokerError(
            f"cannot connect to RabbitMQ at {redact(url)}: {_describe(error)}"
        ) from error


def _describe(error: BaseException) -> str:
    text = str(error) or repr(error)
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


def declare_processor_queue(channel: BlockingChannel, processor: str) -> None:
    """Declare the durable work queue of `processor` and its dead-letter queue.

    A queue that exists with other arguments (made by another tool) is a BrokerError that
    says so: RabbitMQ refuses to redeclare a queue differently."""
    dead = dead_letter_queue(processor)
    try:
        channel.exchange_declare(DEAD_LETTER_EXCHANGE, exchange_type="direct", durable=True)
        channel.queue_declare(dead, durable=True)
        channel.queue_bind(dead, DEAD_LETTER_EXCHANGE, routing_key=processor)
        channel.queue_declare(
            processor,
            durable=True,
            arguments={
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": processor,
            },
        )
    except pika.exceptions.ChannelClosedByBroker as error:
        raise BrokerError(
            f"RabbitMQ refused the queue {processor!r}: {error.reply_text} (a queue of that "
            "name made by another tool must be deleted first)"
        ) from error


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """A message for a processor's queue: the body, and our task id beside it."""

    queue: str
    body: Mapping[str, Any]
    task_id: int | None = None
    attempt: int | None = None


def _message_id(message: OutgoingMessage) -> str | None:
    return None if message.task_id is None else str(message.task_id)


def _properties(message: OutgoingMessage) -> pika.BasicProperties:
    headers: dict[str, Any] = {}
    if message.task_id is not None:
        headers[TASK_ID_HEADER] = message.task_id
    if message.attempt is not None:
        headers[ATTEMPT_HEADER] = message.attempt
    return pika.BasicProperties(
        content_type=JSON_TYPE,
        delivery_mode=_PERSISTENT,
        message_id=_message_id(message),
        timestamp=int(time.time()),
        headers=headers or None,
    )


class Publisher:
    """Publishes persistent JSON messages in transactional batches (see the module docstring),
    declaring each processor's queue the first time it is used. Not thread-safe."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._declared: set[str] = set()
        self._returned: list[tuple[str, str | None]] = []  # (queue, message id) sent back

    def _open(self) -> BlockingChannel:
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = connect(self.url)
            try:
                channel = self._connection.channel()
                channel.tx_select()
                channel.add_on_return_callback(self._on_return)
            except CONNECTION_ERRORS as error:
                self.close()
                raise BrokerError(f"RabbitMQ at {redact(self.url)}: {_describe(error)}") from error
            self._channel = channel
            self._declared.clear()
        return self._channel

    def _on_return(
        self, _channel: BlockingChannel, method: Any, properties: Any, _body: bytes
    ) -> None:
        self._returned.append((method.routing_key, properties.message_id))

    def publish(self, messages: Iterable[OutgoingMessage]) -> int:
        """Publish to each message's processor queue, in order, as one transaction; how
        many were sent. PublishError (after closing the connection) says how many were
        taken: none when the commit failed or was not answered, else those before the first
        message the broker could not route (it sends back a message whose queue is gone)."""
        batch = list(messages)
        if not batch:
            return 0
        self._returned.clear()
        try:
            channel = self._open()
            for message in batch:
                if message.queue not in self._declared:
                    declare_processor_queue(channel, message.queue)
                    self._declared.add(message.queue)
                channel.basic_publish(
                    "",
                    message.queue,
                    json.dumps(message.body, separators=(",", ":")).encode(),
                    _properties(message),
                    mandatory=True,
                )
            channel.tx_commit()
            assert self._connection is not None
            self._connection.process_data_events(time_limit=0)  # runs _on_return
        except BrokerError as error:
            self.close()
            raise PublishError(str(error), 0) from error
        except CONNECTION_ERRORS as error:
            self.close()
            raise PublishError(
                f"lost RabbitMQ at {redact(self.url)} while publishing {len(batch)} messages: "
                f"{_describe(error)}",
                0,
            ) from error
        if self._returned:
            self.close()
            returned = set(self._returned)
            first = next(
                (
                    index
                    for index, message in enumerate(batch)
                    if (message.queue, _message_id(message)) in returned
                ),
                0,
            )
            queue, _ = self._returned[0]
            raise PublishError(f"RabbitMQ could not route a message to queue {queue!r}", first)
        return len(batch)

    def process_events(self) -> None:
        """Answer the broker's heartbeats while idle (call it now and then)."""
        if self._connection is not None and self._connection.is_open:
            try:
                self._connection.process_data_events(time_limit=0)
            except CONNECTION_ERRORS:
                self.close()

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            _close(connection)


def publish_json(
    target: str | BlockingChannel, queue: str, body: Mapping[str, Any], *, durable: bool = True
) -> None:
    """Publish one persistent JSON message to `queue`, declaring it on the fly, confirmed.

    For result queues (`result_queue_name`): a queue that exists already is used as it is,
    whatever arguments it was declared with; a new one is declared `durable`. `target` is a
    broker URL (a connection is opened and closed) or an open channel of the caller's."""
    if isinstance(target, str):
        connection = connect(target)
        try:
            _publish_declaring(connection, queue, body, durable=durable)
        finally:
            _close(connection)
        return
    _publish_on(target, queue, body, durable=durable)


def _publish_declaring(
    connection: BlockingConnection, queue: str, body: Mapping[str, Any], *, durable: bool
) -> None:
    try:
        channel = connection.channel()
        channel.confirm_delivery()
        _publish_on(channel, queue, body, durable=durable)
    except BrokerError:
        raise
    except CONNECTION_ERRORS as error:
        raise BrokerError(f"cannot publish to queue {queue!r}: {_describe(error)}") from error


def _publish_on(
    channel: BlockingChannel, queue: str, body: Mapping[str, Any], *, durable: bool
) -> None:
    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker as error:
        if error.reply_code != 404:
            raise BrokerError(f"queue {queue!r}: {error.reply_text}") from error
        # the passive check closed the channel: open another to declare the queue
        channel = channel.connection.channel()
        channel.confirm_delivery()
        channel.queue_declare(queue, durable=durable)
    try:
        channel.basic_publish(
            "",
            queue,
            json.dumps(body, separators=(",", ":")).encode(),
            pika.BasicProperties(content_type=JSON_TYPE, delivery_mode=_PERSISTENT),
            mandatory=True,
        )
    except (pika.exceptions.UnroutableError, pika.exceptions.NackError) as error:
        raise BrokerError(f"RabbitMQ did not take the message for {queue!r}: {error}") from error


@dataclass(frozen=True, slots=True)
class Delivery:
    """A message handed to this consumer; `generation` says which connection it came on
    (a delivery tag means nothing on another one)."""

    queue: str
    delivery_tag: int
    generation: int
    task_id: int | None
    redelivered: bool
    body: bytes


def task_id_of(properties: pika.BasicProperties) -> int | None:
    """Our task id from a message's properties; None for a message we did not publish."""
    headers = properties.headers or {}
    value = headers.get(TASK_ID_HEADER, properties.message_id)
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


class Consumer:
    """Consumes processors' queues with manual acks and a prefetch; reconnects by itself.

    `poll` drives the connection (heartbeats included) and returns the messages that
    arrived. When the connection is lost, `poll` reconnects with backoff and consumes
    again; the broker redelivers whatever was not acknowledged, and acks or rejects of
    deliveries from the old connection are dropped (they are redelivered instead).
    Not thread-safe: one thread polls, acks and rejects.
    """

    def __init__(
        self,
        url: str,
        queues: Sequence[str],
        *,
        prefetch: int,
        max_backoff: float = 30.0,
    ) -> None:
        if prefetch < 1:
            raise UsageError(f"prefetch must be at least 1, not {prefetch}")
        if not queues:
            raise UsageError("a consumer needs at least one queue")
        self.url = url
        self.queues = tuple(queues)
        self._prefetch = prefetch
        self._max_backoff = max_backoff
        self._connection: BlockingConnection | None = None
        self._channel: BlockingChannel | None = None
        self._generation = 0
        self._arrived: list[Delivery] = []
        self._unsettled: dict[int, None] = {}  # delivery tags of this connection, in order
        self._next_attempt = 0.0
        self._backoff = 0.5
        self._paused = False
        self.reconnects = 0

    @property
    def connected(self) -> bool:
        return self._channel is not None and self._channel.is_open

    def open(self) -> None:
        """Connect and start consuming; BrokerError when the broker cannot be reached."""
        self._close_quietly()
        connection = connect(self.url)
        try:
            channel = connection.channel()
            # global: one limit for the channel, shared by the queues' consumers and changed
            # at once by set_prefetch (a per-consumer limit stays as it was at basic_consume)
            channel.basic_qos(prefetch_count=self._prefetch, global_qos=True)
            for queue in self.queues:
                declare_processor_queue(channel, queue)
            if not self._paused:
                self._consume(channel)
        except BrokerError:
            _close(connection)
            raise
        except CONNECTION_ERRORS as error:
            _close(connection)
            raise BrokerError(f"RabbitMQ at {redact(self.url)}: {_describe(error)}") from error
        self._connection, self._channel = connection, channel
        self._generation += 1
        self._unsettled.clear()
        self._backoff = 0.5

    def _consume(self, channel: BlockingChannel) -> None:
        for queue in self.queues:
            channel.basic_consume(
                queue,
                lambda ch, method, properties, body, q=queue: self._arrive(
                    q, method, properties, body
                ),
                auto_ack=False,
                consumer_tag=f"{queue}#{self._generation + 1}",
            )

    def _arrive(self, queue: str, method: Any, properties: Any, body: bytes) -> None:
        self._unsettled[method.delivery_tag] = None
        self._arrived.append(
            Delivery(
                queue,
                method.delivery_tag,
                self._generation,
                task_id_of(properties),
                bool(method.redelivered),
                body,
            )
        )

    def set_prefetch(self, prefetch: int) -> None:
        """How many unacknowledged messages the broker may hand us (kept on reconnects)."""
        if prefetch == self._prefetch:
            return
        self._prefetch = prefetch
        if self.connected and self._channel is not None:
            try:
                self._channel.basic_qos(prefetch_count=prefetch, global_qos=True)
            except CONNECTION_ERRORS as error:
                self._lost(_describe(error))

    def call_threadsafe(self, callback: Callable[[], None]) -> bool:
        """Have the polling thread run `callback` soon, inside its `poll` (callable from any
        thread: pika's one thread-safe method); False when there is no connection now."""
        connection = self._connection
        if connection is None:
            return False
        try:
            connection.add_callback_threadsafe(callback)
        except Exception:  # closed or closing meanwhile: the poller's next round serves it
            return False
        return True

    def pause(self) -> None:
        """Stop taking new messages (those already delivered stay ours until acked)."""
        if self._paused:
            return
        self._paused = True
        if self.connected and self._channel is not None:
            try:
                for queue in self.queues:
                    self._channel.basic_cancel(f"{queue}#{self._generation}")
            except CONNECTION_ERRORS:
                self._lost("cancelling the consumers")

    def poll(self, time_limit: float) -> list[Delivery]:
        """Serve the connection for up to `time_limit` seconds; the messages that arrived.

        Never raises for a lost broker: it reconnects (with backoff) on a later call."""
        if not self.connected:
            if time.monotonic() < self._next_attempt:
                time.sleep(min(time_limit, self._next_attempt - time.monotonic()))
                return []
            try:
                self.open()
                if self.reconnects or self._generation > 1:
                    log.info("connected to RabbitMQ again (%s)", redact(self.url))
            except BrokerError as error:
                self._lost(str(error))
                return []
        assert self._connection is not None
        try:
            self._connection.process_data_events(time_limit=max(time_limit, 0.0))
        except CONNECTION_ERRORS as error:
            self._lost(_describe(error))
        arrived, self._arrived = self._arrived, []
        return arrived

    def ack(self, delivery: Delivery) -> bool:
        """Acknowledge a message; False when its connection is gone (it comes again)."""
        return self._settle(delivery, lambda ch: ch.basic_ack(delivery.delivery_tag))

    def reject(self, delivery: Delivery, *, requeue: bool) -> bool:
        """Reject a message: back to its queue, or (`requeue` False) to the dead letters."""
        return self._settle(
            delivery, lambda ch: ch.basic_reject(delivery.delivery_tag, requeue=requeue)
        )

    def settle(self, acks: Sequence[Delivery], dead: Sequence[Delivery]) -> None:
        """Acknowledge `acks` and dead-letter `dead` (those of an old connection are dropped:
        they come again).

        The oldest unsettled messages, when all of them are acknowledged here, take one
        ack with `multiple` (a batch of completions is mostly such a run)."""
        for delivery in dead:
            self.reject(delivery, requeue=False)
        tags = {d.delivery_tag for d in acks if d.generation == self._generation}
        if not tags or self._channel is None or not self._channel.is_open:
            return
        upto = None
        for tag in self._unsettled:
            if tag not in tags:
                break
            upto = tag
        try:
            if upto is not None:
                self._channel.basic_ack(upto, multiple=True)
            for tag in sorted(tags):
                if upto is None or tag > upto:
                    self._channel.basic_ack(tag)
        except CONNECTION_ERRORS as error:
            self._lost(_describe(error))
            return
        for tag in tags:
            self._unsettled.pop(tag, None)

    def _settle(self, delivery: Delivery, action: Any) -> bool:
        if delivery.generation != self._generation or not self.connected:
            return False
        assert self._channel is not None
        try:
            action(self._channel)
        except CONNECTION_ERRORS as error:
            self._lost(_describe(error))
            return False
        self._unsettled.pop(delivery.delivery_tag, None)
        return True

    def _lost(self, why: str) -> None:
        self.reconnects += 1
        log.warning("RabbitMQ connection lost (%s); reconnecting in %.1f s", why, self._backoff)
        self._close_quietly()
        self._next_attempt = time.monotonic() + self._backoff
        self._backoff = min(self._max_backoff, self._backoff * 2)

    def _close_quietly(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        self._arrived.clear()
        if connection is not None:
            _close(connection)

    def close(self) -> None:
        """Close the connection: every unacknowledged message goes back to its queue."""
        self._close_quietly()


def _close(connection: BlockingConnection) -> None:
    if connection.is_open:
        with contextlib.suppress(*CONNECTION_ERRORS):
            connection.close()
