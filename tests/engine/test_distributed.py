"""Distributed mode against the real RabbitMQ and PostgreSQL: the dispatcher publishes page
tasks, workers consume them, the store holds every outcome and the METS gets each output
once — also when messages come twice, pages fail for good or a worker is killed."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from ocrswarm.engine import amqp
from ocrswarm.engine.brokertasks import BrokerTasks
from ocrswarm.engine.coordinator import CoordinatorOptions
from ocrswarm.engine.database import database_url
from ocrswarm.engine.dispatch import processing_message
from ocrswarm.engine.queue import RetryPolicy
from ocrswarm.engine.records import TaskLease, TaskResult
from ocrswarm.engine.schema import metadata
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.mets import Mets
from tests.engine.fake_processors import EXTRA_PROCESSORS
from tests.engine.test_service import page_inputs, workspace

PROCESSORS = ["ocrd-swarm-dummy", "ocrd-test-sleep", "ocrd-test-fail", "ocrd-test-crash"]


@pytest.fixture
def broker(amqp_url: str) -> Iterator[str]:
    """The session's vhost with the test processors' queues empty."""
    connection = amqp.connect(amqp_url)
    channel = connection.channel()
    for name in PROCESSORS:
        amqp.declare_processor_queue(channel, name)
        channel.queue_purge(name)
        channel.queue_purge(amqp.dead_letter_queue(name))
    connection.close()
    yield amqp_url


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    engine = create_engine(database_url(postgres_url))
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return postgres_url


@pytest.fixture
def store(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.setenv("OCRSWARM_EXTRA_PROCESSORS", EXTRA_PROCESSORS)
    with Store(pg_url, retry_policy=RetryPolicy(backoff_base=0.05)) as opened:
        yield opened


def wait_until(condition: Callable[[], bool], timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def messages_in(url: str, queue: str) -> list[tuple[bytes, dict[str, object]]]:
    """Take every message out of `queue`: (body, headers)."""
    connection = amqp.connect(url)
    channel = connection.channel()
    taken = []
    while True:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        taken.append((body, dict(properties.headers or {})))
    connection.close()
    return taken


def chain(*executables: str, parameters: dict[str, object] | None = None) -> list[WorkflowStep]:
    grps = ["OCR-D-IMG", *(f"S{n}" for n in range(1, len(executables) + 1))]
    return [
        WorkflowStep(exe, (grps[n],), (grps[n + 1],), dict(parameters or {}) if n == 0 else {})
        for n, exe in enumerate(executables)
    ]


def run_service(
    store: Store, url: str, mets_path: Path, steps: list[WorkflowStep], *, max_attempts: int = 3
) -> tuple[EngineService, str]:
    service = EngineService(store, CoordinatorOptions(workers=2, lease_seconds=30), queue_url=url)
    service.start()
    workspace_id = store.add_workspace(mets_path)
    job = store.submit_workflow(
        workspace_id, steps, page_inputs(mets_path), max_attempts=max_attempts
    )
    service.add_workspace(workspace_id)
    return service, job.id


def test_pages_go_through_rabbitmq_and_into_the_mets_once(
    tmp_path: Path, store: Store, broker: str
) -> None:
    mets_path = workspace(tmp_path, "ws", 5)
    steps = chain("ocrd-swarm-dummy", "ocrd-swarm-dummy", "ocrd-swarm-dummy")
    service, job_id = run_service(store, broker, mets_path, steps)
    try:
        wait_until(lambda: service.workflow_job_state(job_id) is State.SUCCESS)
    finally:
        service.stop()
    mets = Mets.read(mets_path)
    for grp in ("S1", "S2", "S3"):
        assert sorted(f.page_id for f in mets.find_files(file_grp=grp)) == sorted(mets.page_ids)
    tasks = [
        t for job in store.workflow_job(job_id).processing_job_ids for t in store.page_tasks(job)
    ]
    assert {t.state for t in tasks} == {State.SUCCESS} and {t.attempts for t in tasks} == {1}
    assert messages_in(broker, "ocrd-swarm-dummy") == []  # every message acknowledged


def test_a_message_body_follows_the_ocrd_processing_message_schema(
    tmp_path: Path, store: Store, shared_spec: Path
) -> None:
    import jsonschema
    import yaml

    schema = yaml.safe_load((shared_spec / "web_api/processing-message.schema.yml").read_text())
    mets_path = workspace(tmp_path, "ws", 1)
    store.submit_workflow(
        store.add_workspace(mets_path), chain("ocrd-swarm-dummy"), page_inputs(mets_path)
    )
    (ready,) = store.take_ready(10)
    body = processing_message(ready)
    jsonschema.validate(body, schema, format_checker=jsonschema.FormatChecker())
    assert body["path_to_mets"] == str(mets_path) and body["page_id"] == ready.page_id
    assert store.take_ready(10) == []  # marked published


def test_a_redelivered_message_of_a_finished_page_is_acknowledged_without_work(
    tmp_path: Path, store: Store, broker: str
) -> None:
    mets_path = workspace(tmp_path, "ws", 1)
    store.submit_workflow(
        store.add_workspace(mets_path), chain("ocrd-swarm-dummy"), page_inputs(mets_path)
    )
    (ready,) = store.take_ready(10)
    message = amqp.OutgoingMessage(
        ready.executable, processing_message(ready), task_id=ready.task_id, attempt=1
    )
    publisher = amqp.Publisher(broker)
    publisher.publish([message, message])  # the dispatcher sent it twice
    publisher.close()
    source = BrokerTasks(store, broker, [ready.executable], prefetch=4)
    leases: list[TaskLease] = []

    def claim() -> list[TaskLease]:
        source.poll()
        return source.claim("worker-1", 4, 30)

    try:
        wait_until(lambda: bool(leases.extend(claim()) or leases))
        (lease,) = leases
        assert store.complete([TaskResult(lease.task_id, lease.token)]) == [True]
        source.settled(lease.token, State.SUCCESS)
        publisher = amqp.Publisher(broker)
        publisher.publish([message])  # a redelivery after the page was done
        publisher.close()
        wait_until(lambda: claim() == [] and source.dropped == 2)
        assert claim() == []
    finally:
        source.close()
    assert messages_in(broker, ready.executable) == []
    assert store.page_tasks(ready.job_id)[0].attempts == 1


def test_a_page_that_keeps_failing_is_dead_lettered_and_its_later_steps_cancelled(
    tmp_path: Path, store: Store, broker: str
) -> None:
    mets_path = workspace(tmp_path, "ws", 2)
    steps = chain("ocrd-test-fail", "ocrd-test-sleep", parameters={"pages": ["PHYS_0001"]})
    service, job_id = run_service(store, broker, mets_path, steps, max_attempts=2)
    try:
        wait_until(lambda: service.workflow_job_state(job_id) is State.FAILED)
    finally:
        service.stop()
    first, second = store.workflow_job(job_id).processing_job_ids
    failed = {t.page_id: t for t in store.page_tasks(first)}
    assert (failed["PHYS_0001"].state, failed["PHYS_0001"].attempts) == (State.FAILED, 2)
    assert failed["PHYS_0002"].state is State.SUCCESS
    later = {t.page_id: t.state for t in store.page_tasks(second)}
    assert later == {"PHYS_0001": State.CANCELLED, "PHYS_0002": State.SUCCESS}
    dead = messages_in(broker, amqp.dead_letter_queue("ocrd-test-fail"))
    assert [headers[amqp.TASK_ID_HEADER] for _, headers in dead] == [failed["PHYS_0001"].task_id]
    assert json.loads(dead[0][0])["page_id"] == "PHYS_0001"
    assert messages_in(broker, "ocrd-test-fail") == []


def test_a_worker_process_killed_mid_page_costs_that_page_one_more_attempt(
    tmp_path: Path, store: Store, broker: str
) -> None:
    mets_path = workspace(tmp_path, "ws", 3)
    steps = chain("ocrd-test-sleep", "ocrd-swarm-dummy", parameters={"seconds": 1.5})
    steps[1] = WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("S2",), {})
    service, job_id = run_service(store, broker, mets_path, steps)
    started = mets_path.parent / "started"
    try:
        wait_until(lambda: (started / "PHYS_0001.1").exists())
        os.kill(int((started / "PHYS_0001.1").read_text()), signal.SIGKILL)
        wait_until(lambda: service.workflow_job_state(job_id) is State.SUCCESS)
    finally:
        service.stop()
    assert sorted(p.name for p in started.iterdir()) == [
        "PHYS_0001.1",
        "PHYS_0001.2",
        "PHYS_0002.1",
        "PHYS_0003.1",
    ]
    mets = Mets.read(mets_path)
    for grp in ("S1", "S2"):
        assert sorted(f.page_id for f in mets.find_files(file_grp=grp)) == sorted(mets.page_ids)
