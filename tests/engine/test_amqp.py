"""The RabbitMQ consumer against a real broker: how many messages it is handed at once."""

from __future__ import annotations

import json
import secrets

import pytest

from ocrswarm.engine import amqp


def test_a_raised_prefetch_applies_to_the_running_consumer_at_once(amqp_url: str) -> None:
    """The coordinator raises the prefetch once it knows how long pages take; a limit that
    stayed at its first value would leave worker processes idle (RabbitMQ keeps a
    per-consumer limit as it was at basic_consume)."""
    queue = f"ocrd-prefetch-test-{secrets.token_hex(4)}"
    publisher = amqp.Publisher(amqp_url)
    publisher.publish(amqp.OutgoingMessage(queue, {"n": n}, task_id=n) for n in range(20))
    publisher.close()
    consumer = amqp.Consumer(amqp_url, [queue], prefetch=2)
    try:
        held = []
        for _ in range(5):
            held += consumer.poll(0.2)
        assert len(held) == 2
        consumer.set_prefetch(8)
        for _ in range(5):
            held += consumer.poll(0.2)
        assert len(held) == 8
    finally:
        consumer.close()
        connection = amqp.connect(amqp_url)
        channel = connection.channel()
        channel.queue_delete(queue)
        channel.queue_delete(amqp.dead_letter_queue(queue))
        connection.close()


def drain(url: str, queue: str) -> list[int]:
    """Take every message out of `queue`: the `n` of each body."""
    connection = amqp.connect(url)
    channel = connection.channel()
    taken = []
    while True:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        taken.append(json.loads(body)["n"])
    connection.close()
    return taken


def delete_queues(url: str, *queues: str) -> None:
    connection = amqp.connect(url)
    channel = connection.channel()
    for queue in queues:
        channel.queue_delete(queue)
        channel.queue_delete(amqp.dead_letter_queue(queue))
    connection.close()


def test_a_batch_is_taken_whole_and_an_unroutable_message_says_how_many_came_before(
    amqp_url: str,
) -> None:
    """The dispatcher unpublishes the tasks of every message from the first one the broker
    did not take; those before it must really be in their queues."""
    live, gone = (f"ocrd-batch-test-{secrets.token_hex(4)}" for _ in range(2))
    publisher = amqp.Publisher(amqp_url)
    try:
        assert publisher.publish(amqp.OutgoingMessage(q, {"n": 0}) for q in (live, gone)) == 2
        delete_queues(amqp_url, gone)  # behind the publisher's back: it declared it once
        batch = [
            amqp.OutgoingMessage(live, {"n": 1}, task_id=1),
            amqp.OutgoingMessage(gone, {"n": 2}, task_id=2),
            amqp.OutgoingMessage(live, {"n": 3}, task_id=3),
        ]
        with pytest.raises(amqp.PublishError) as refused:
            publisher.publish(batch)
        assert refused.value.published == 1 and gone in str(refused.value)
        assert drain(amqp_url, live) == [0, 1, 3]
        assert publisher.publish(batch) == 3  # connected and declared again
        assert drain(amqp_url, gone) == [2]
    finally:
        publisher.close()
        delete_queues(amqp_url, live, gone)


def test_settled_messages_leave_the_queue_and_a_dead_one_goes_to_the_dead_letters(
    amqp_url: str,
) -> None:
    """A run of the oldest is acknowledged with one `multiple` ack: it must cover exactly
    the messages settled, never a rejected one or one still held."""
    queue = f"ocrd-settle-test-{secrets.token_hex(4)}"
    publisher = amqp.Publisher(amqp_url)
    publisher.publish(amqp.OutgoingMessage(queue, {"n": n}, task_id=n) for n in range(7))
    publisher.close()
    consumer = amqp.Consumer(amqp_url, [queue], prefetch=10)
    try:
        held: list[amqp.Delivery] = []
        for _ in range(20):
            held += consumer.poll(0.1)
            if len(held) == 7:
                break
        assert [d.task_id for d in held] == list(range(7))
        consumer.settle([held[0], held[1], held[3], held[4]], [held[2]])
        consumer.settle([held[6]], [])
        consumer.poll(0.2)
    finally:
        consumer.close()  # the one still held goes back to its queue
    try:
        assert drain(amqp_url, queue) == [5]
        assert drain(amqp_url, amqp.dead_letter_queue(queue)) == [2]
    finally:
        delete_queues(amqp_url, queue)
