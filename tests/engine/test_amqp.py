"""The RabbitMQ consumer against a real broker: how many messages it is handed at once."""

from __future__ import annotations

import secrets

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
