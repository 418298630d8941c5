"""Result delivery: callbacks over HTTP and result queues in a real RabbitMQ, with retries
and the owed results kept on disk until each destination is served."""

from __future__ import annotations

import json
import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pika
import pytest
import yaml

from ocrswarm.engine.service import EngineService
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.errors import UsageError
from ocrswarm.formats.mets import Mets
from ocrswarm.server.results import (
    Destination,
    PendingResult,
    PendingResults,
    ResultSender,
    Transport,
    check_queue_name,
)
from ocrswarm.server.submission import keep_promises
from tests.cli.test_worker_cli import pg_url  # noqa: F401 (a fixture: the session's PostgreSQL, emptied)
from tests.engine.conftest import postgres_url  # noqa: F401 (a fixture)
from tests.server.conftest import ServerProcess, free_port

QUICK = (0.01, 0.01)


def result_schema(shared_spec: Path) -> dict[str, Any]:
    schema: dict[str, Any] = yaml.safe_load(
        (shared_spec / "web_api" / "result-message.schema.yml").read_text()
    )
    return schema


def take_message(amqp_url: str, queue: str, timeout: float = 10.0) -> dict[str, Any] | None:
    """The next message of `queue` (acknowledged), or None if none comes within `timeout`."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        channel = connection.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                method, properties, body = channel.basic_get(queue, auto_ack=True)
            except pika.exceptions.ChannelClosedByBroker:  # not declared yet
                channel = connection.channel()
                method = None
            if method is not None:
                assert properties.delivery_mode == 2  # persistent
                message: dict[str, Any] = json.loads(body)
                return message
            time.sleep(0.05)
        return None
    finally:
        connection.close()


def queue_is_durable(amqp_url: str, queue: str) -> bool:
    """Whether `queue` exists as a durable queue (a passive declaration that says
    durable=True succeeds only then)."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    try:
        connection.channel().queue_declare(queue, durable=True, passive=True)
        channel = connection.channel()
        try:
            channel.queue_declare(queue, durable=False)  # a different declaration fails
        except pika.exceptions.ChannelClosedByBroker:
            return True
        return False
    finally:
        connection.close()


@pytest.fixture
def pending(tmp_path: Path) -> PendingResults:
    return PendingResults(tmp_path / "results.json")


def promise(*destinations: Destination, where: dict[str, str] | None = None) -> PendingResult:
    return PendingResult(
        str(uuid.uuid4()), False, where or {"workspace_id": "ws-1"}, tuple(destinations)
    )


@pytest.fixture
def sender_factory(pending: PendingResults) -> Iterator[Any]:
    made: list[ResultSender] = []

    def make(amqp_url: str | None) -> ResultSender:
        sender = ResultSender(pending, amqp_url=amqp_url, backoff=QUICK, timeout=2.0)
        sender.start()
        made.append(sender)
        return sender

    yield make
    for sender in made:
        sender.stop()


def wait_until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_result_queue_gets_the_specs_result_message(
    amqp_url: str, shared_spec: Path, pending: PendingResults, sender_factory: Any
) -> None:
    queue = f"results-{uuid.uuid4().hex[:8]}"
    owed = promise(Destination(Transport.QUEUE, queue), where={"path_to_mets": "/d/mets.xml"})
    pending.add(owed)
    sender = sender_factory(amqp_url)

    sender.report(owed, State.SUCCESS)

    message = take_message(amqp_url, queue)
    assert message == {"job_id": owed.job_id, "status": "SUCCESS", "path_to_mets": "/d/mets.xml"}
    jsonschema.validate(
        message, result_schema(shared_spec), format_checker=jsonschema.FormatChecker()
    )
    assert queue_is_durable(amqp_url, queue)
    wait_until(lambda: pending.entries() == [])


@pytest.mark.parametrize("state", [State.FAILED, State.CANCELLED])
def test_a_job_that_did_not_succeed_is_reported_failed(
    amqp_url: str, shared_spec: Path, sender_factory: Any, state: State
) -> None:
    queue = f"results-{uuid.uuid4().hex[:8]}"
    owed = promise(Destination(Transport.QUEUE, queue))

    sender_factory(amqp_url).report(owed, state)

    message = take_message(amqp_url, queue)
    assert message is not None and message["status"] == "FAILED"
    jsonschema.validate(message, result_schema(shared_spec))


def test_callback_and_queue_both_get_the_result(
    amqp_url: str,
    receiver: tuple[str, list[dict[str, Any]]],
    pending: PendingResults,
    sender_factory: Any,
) -> None:
    url, received = receiver
    queue = f"results-{uuid.uuid4().hex[:8]}"
    owed = promise(Destination(Transport.CALLBACK, url), Destination(Transport.QUEUE, queue))
    pending.add(owed)

    sender_factory(amqp_url).report(owed, State.SUCCESS)

    assert take_message(amqp_url, queue) is not None
    wait_until(lambda: len(received) == 1)
    assert received == [{"job_id": owed.job_id, "state": "SUCCESS", "workspace_id": "ws-1"}]
    wait_until(lambda: pending.entries() == [])


def test_an_unreachable_broker_is_given_up_on_without_holding_up_the_callback(
    receiver: tuple[str, list[dict[str, Any]]], pending: PendingResults, sender_factory: Any
) -> None:
    url, received = receiver
    owed = promise(Destination(Transport.QUEUE, "results"), Destination(Transport.CALLBACK, url))
    pending.add(owed)
    sender = sender_factory(f"amqp://guest:guest@127.0.0.1:{free_port()}/")

    sender.report(owed, State.SUCCESS)

    wait_until(lambda: len(received) == 1)
    assert sender.given_up == 1
    assert sender.delivered == 1
    assert pending.entries() == []


def test_what_a_stopping_server_did_not_deliver_stays_owed(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    owed = promise(Destination(Transport.CALLBACK, f"http://127.0.0.1:{free_port()}/x"))
    pending = PendingResults(path)
    pending.add(owed)
    sender = ResultSender(pending, backoff=(30.0,), timeout=1.0)
    sender.start()
    sender.report(owed, State.SUCCESS)  # its first attempt fails; the next is 30 s away

    sender.stop()

    assert PendingResults(path).entries() == [owed]
    assert sender.given_up == 0


def test_owed_results_survive_a_restart_one_destination_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    callback = Destination(Transport.CALLBACK, "http://example.org/done")
    queue = Destination(Transport.QUEUE, "results")
    owed = promise(callback, queue)
    PendingResults(path).add(owed)

    reloaded = PendingResults(path)
    reloaded.served(owed.job_id, callback)

    assert PendingResults(path).entries() == [
        PendingResult(owed.job_id, False, owed.where, (queue,))
    ]
    reloaded.served(owed.job_id, queue)
    assert PendingResults(path).entries() == []


def test_a_result_owed_for_a_job_that_no_longer_exists_is_forgotten_at_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "results.json"
    owed = promise(Destination(Transport.CALLBACK, "http://example.org/done"))
    PendingResults(path).add(owed)
    with Store(sqlite_url(tmp_path / "state.sqlite")) as store:
        store.migrate()
        sender = ResultSender(PendingResults(path))
        keep_promises(EngineService(store), sender)
    assert PendingResults(path).entries() == []


def test_a_damaged_file_of_owed_results_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(
        '[{"job_id": "x"}, "nonsense", {"job_id": "y", "workflow": false, '
        '"where": {}, "destinations": [{"transport": "pigeon", "address": "a"}]}]'
    )

    assert PendingResults(path).entries() == []


@pytest.mark.parametrize("name", ["", " ", "amq.results", "x" * 256])
def test_queue_names_rabbitmq_refuses_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="result_queue_name"):
        check_queue_name(name)


def test_a_plain_queue_name_is_fine() -> None:
    check_queue_name("ocrd-results.batch-7")


def test_a_processing_job_publishes_its_result_to_the_named_queue(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    amqp_url: str,
    shared_spec: Path,
    make_workspace: Any,
) -> None:
    mets = make_workspace(2)
    config = f'\n[queue]\nurl = "{amqp_url}"\n\n[database]\nurl = "{pg_url}"\n'
    server = ServerProcess(tmp_path / "data", [tmp_path], workers=1, extra_config=config)
    server.start()
    queue = f"results-{uuid.uuid4().hex[:8]}"
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            body = {
                "path_to_mets": str(mets),
                "input_file_grps": ["OCR-D-IMG"],
                "output_file_grps": ["OUT"],
                "result_queue_name": queue,
            }
            answer = client.post("/processor/run/ocrd-dummy", json=body)
            assert answer.status_code == 200, answer.text
            job_id = answer.json()["job_id"]

            message = take_message(amqp_url, queue, timeout=90)
            reserved = client.post(
                "/processor/run/ocrd-dummy", json={**body, "result_queue_name": "amq.x"}
            )
    finally:
        server.stop(signal.SIGKILL)

    assert message == {"job_id": job_id, "status": "SUCCESS", "path_to_mets": str(mets)}
    jsonschema.validate(
        message, result_schema(shared_spec), format_checker=jsonschema.FormatChecker()
    )
    # published once the METS lists the outputs
    assert len(Mets.read(mets).find_files(file_grp="OUT")) == 2
    assert reserved.status_code == 422
    assert "result_queue_name" in reserved.json()["detail"]
