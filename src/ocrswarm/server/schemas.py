"""The request and response bodies of ../shared/spec/openapi.yml as pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ocrswarm.engine.states import State


class ErrorBody(BaseModel):
    """Every error answer: what went wrong (a message, or the list of invalid fields)."""

    detail: str | list[Any]


class ProcessorArgs(BaseModel):
    """POST /processor/run/{executable}: what to run where."""

    model_config = ConfigDict(extra="ignore")

    processor_name: str | None = None
    path_to_mets: str | None = None
    workspace_id: str | None = None
    description: str | None = None
    input_file_grps: list[str]
    output_file_grps: list[str] | None = None
    page_id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    result_queue_name: str | None = None
    callback_url: str | None = None
    agent_type: str | None = "worker"
    depends_on: list[str] | None = None


class ProcessorJob(BaseModel):
    job_id: str
    processor_name: str
    state: State
    path_to_mets: str | None = None
    workspace_id: str | None = None
    input_file_grps: list[str]
    output_file_grps: list[str] | None = None
    page_id: str | None = None
    log_file_path: str | None = None


class WorkflowJob(BaseModel):
    job_id: str
    page_id: str
    page_wise: bool = False
    processing_job_ids: dict[str, Any]
    path_to_mets: str | None = None
    workspace_id: str | None = None
    description: str | None = None


class WorkflowJobStatus(WorkflowJob):
    """GET /workflow/job/{id}: the job, its state, each step's task counts, failed pages."""

    state: State
    processors: dict[str, dict[str, Any]]
    failed_tasks: list[dict[str, Any]]


class WorkflowJobSimple(BaseModel):
    state: State


class WorkflowId(BaseModel):
    workflow_id: str


class DiscoveryResponse(BaseModel):
    ram: int
    cpu_cores: int
    has_cuda: bool
    cuda_version: str
    has_ocrd_all: bool
    ocrd_all_version: str
