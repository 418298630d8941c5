"""Discovery: GET /discovery, GET /processor, GET /processor/info/{executable}."""

from __future__ import annotations

import httpx

from ocrswarm.processors.ocrd_tool import executables


def test_discovery_describes_the_machine(client: httpx.Client) -> None:
    answer = client.get("/discovery").raise_for_status().json()
    assert answer["cpu_cores"] >= 1
    assert answer["ram"] > 0
    assert answer["has_cuda"] is False
    assert set(answer) == {
        "ram",
        "cpu_cores",
        "has_cuda",
        "cuda_version",
        "has_ocrd_all",
        "ocrd_all_version",
    }


def test_processor_list_has_the_built_ins_and_the_ocrd_dummy_alias(client: httpx.Client) -> None:
    names = client.get("/processor").raise_for_status().json()
    assert set(executables()) <= set(names)
    assert "ocrd-dummy" in names
    assert all(name.startswith("ocrd-") for name in names)


def test_processor_info_is_the_ocrd_tool_entry(client: httpx.Client) -> None:
    tool = client.get("/processor/info/ocrd-dummy").raise_for_status().json()
    assert tool["executable"] == "ocrd-swarm-dummy"
    assert "copy_files" in tool["parameters"]


def test_unknown_processor_is_404_with_a_detail(client: httpx.Client) -> None:
    response = client.get("/processor/info/ocrd-no-such-thing")
    assert response.status_code == 404
    assert "ocrd-no-such-thing" in response.json()["detail"]


def test_unknown_path_is_404_json(client: httpx.Client) -> None:
    response = client.get("/no/such/path")
    assert response.status_code == 404
    assert "detail" in response.json()
