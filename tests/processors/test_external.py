"""Third-party processors: discovery on PATH, and page runs in a private one-page workspace.

A small but real `ocrd-*` executable written by the tests exercises every path without the
interop environment; the real `ocrd-dummy` and `ocrd-tesserocr-recognize` from it prove the
same against OCR-D's own code.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from ocrswarm.errors import FormatError
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import parse_page, validate_page
from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors.external import (
    ExternalTool,
    ExternalToolError,
    discover_external_tools,
    external_processor_class,
    probe_tool,
    tool_version,
)
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import PageJob
from ocrswarm.processors.standalone import (
    PageFailuresError,
    ProcessorRun,
    page_job,
    run_standalone,
)
from tests.conftest import REPO, require_or_skip
from tests.render import render_page

FAKE_TOOL = {
    "executable": "ocrd-fake",
    "description": "A fake processor for the tests",
    "categories": ["Image preprocessing"],
    "steps": ["preprocessing/optimization/binarization"],
    "input_file_grp_cardinality": 1,
    "output_file_grp_cardinality": 1,
    "parameters": {
        "fail": {"type": "boolean", "default": False, "description": "Fail every page"},
        "absolute": {
            "type": "boolean",
            "default": False,
            "description": "Write the AlternativeImage filename as an absolute path",
        },
    },
}

# A real executable speaking the OCR-D processor CLI, editing its METS as plain XML.
FAKE_SCRIPT = textwrap.dedent(
    """\
    #!{python}
    import argparse, json, os, shutil, sys
    import xml.etree.ElementTree as ET

    TOOL = {tool}
    if "--dump-json" in sys.argv or "-J" in sys.argv:
        print(json.dumps(TOOL))
        sys.exit(0)
    if "--version" in sys.argv or "-V" in sys.argv:
        print("Version 1.2.3, fake processor")
        sys.exit(0)
    parser = argparse.ArgumentParser()
    for option in ("-m", "-I", "-O", "-p"):
        parser.add_argument(option)
    args = parser.parse_args()
    params = json.load(open(args.p)) if args.p else {{}}
    if params.get("fail"):
        print("fake: starting", file=sys.stderr)
        print("fake: the page is broken beyond repair", file=sys.stderr)
        sys.exit(3)
    M = "http://www.loc.gov/METS/"
    X = "http://www.w3.org/1999/xlink"
    P = "http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15"
    ET.register_namespace("mets", M)
    ET.register_namespace("xlink", X)
    directory = os.path.dirname(os.path.abspath(args.m))
    tree = ET.parse(args.m)
    root = tree.getroot()
    file_sec = root.find("{{%s}}fileSec" % M)
    source_group = [g for g in file_sec if g.get("USE") == args.I][0]
    out_group = ET.SubElement(file_sec, "{{%s}}fileGrp" % M, USE=args.O)
    for div in root.iter("{{%s}}div" % M):
        if div.get("TYPE") != "page":
            continue
        ids = [f.get("FILEID") for f in div.findall("{{%s}}fptr" % M)]
        source = [f for f in source_group if f.get("ID") in ids][0]
        href = source.find("{{%s}}FLocat" % M).get("{{%s}}href" % X)
        image = href
        if source.get("MIMETYPE") == "{page}":
            page = ET.parse(os.path.join(directory, href)).getroot()
            image = page.find("{{%s}}Page" % P).get("imageFilename")
        if not os.path.isfile(os.path.join(directory, image)):
            print("fake: image %s is missing" % image, file=sys.stderr)
            sys.exit(4)
        number = source.get("ID").rsplit("_", 1)[-1]
        page_id = args.O + "_" + number
        image_id = page_id + "_IMG"
        image_href = args.O + "/" + image_id + ".png"
        os.makedirs(os.path.join(directory, args.O), exist_ok=True)
        shutil.copyfile(os.path.join(directory, image), os.path.join(directory, image_href))
        alternative = os.path.join(directory, image_href) if params.get("absolute") else image_href
        xml = (
            '<?xml version="1.0" encoding="UTF-8"?>\\n'
            '<PcGts xmlns="%s" pcGtsId="%s"><Metadata><Creator>fake</Creator>'
            "<Created>2024-01-01T00:00:00</Created><LastChange>2024-01-01T00:00:00</LastChange>"
            '</Metadata><Page imageFilename="%s" imageWidth="10" imageHeight="10">'
            '<AlternativeImage filename="%s" comments="binarized"/></Page></PcGts>\\n'
        ) % (P, page_id, image, alternative)
        with open(os.path.join(directory, args.O, page_id + ".xml"), "w") as out:
            out.write(xml)
        for file_id, mimetype, file_href in (
            (image_id, "image/png", image_href),
            (page_id, "{page}", args.O + "/" + page_id + ".xml"),
        ):
            element = ET.SubElement(out_group, "{{%s}}file" % M, ID=file_id, MIMETYPE=mimetype)
            ET.SubElement(element, "{{%s}}FLocat" % M, {{"LOCTYPE": "OTHER", "OTHERLOCTYPE": "FILE",
                          "{{%s}}href" % X: file_href}})
            ET.SubElement(div, "{{%s}}fptr" % M, FILEID=file_id)
    tree.write(args.m, xml_declaration=True, encoding="UTF-8")
    """
)


def write_executable(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_bin(tmp_path: Path) -> Path:
    """A bin directory with `ocrd-fake`, a broken `ocrd-broken`, a non-executable file and
    a script shadowing one of our built-ins."""
    directory = tmp_path / "bin"
    script = FAKE_SCRIPT.format(python=sys.executable, tool=repr(FAKE_TOOL), page=MIMETYPE_PAGE)
    write_executable(directory / "ocrd-fake", script)
    write_executable(directory / "ocrd-broken", "#!/bin/sh\necho 'no JSON here'\nexit 1\n")
    write_executable(directory / "ocrd-swarm-dummy", "#!/bin/sh\nexit 1\n")
    (directory / "ocrd-notexec").write_text("#!/bin/sh\nexit 0\n")
    return directory


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    scans = tmp_path / "scans"
    for n in (1, 2):
        render_page(scans / f"page_{n}.png", [f"Page {n}"], size=(400, 300))
    return Workspace.from_images(scans, tmp_path / "ws")


def fake_tool(fake_bin: Path) -> ExternalTool:
    return probe_tool(fake_bin / "ocrd-fake")


def run_external(
    workspace: Workspace,
    tool: ExternalTool,
    parameters: dict[str, object],
    *,
    input_grp: str = "OCR-D-IMG",
    output_grp: str = "OUT",
    **options: object,
) -> None:
    processor_class = external_processor_class(tool, **options)  # type: ignore[arg-type]
    validated = validate_parameters(tool.ocrd_tool, parameters)
    run = ProcessorRun(
        tool.executable,
        tool_version(tool),
        tool.step,
        (input_grp,),
        (output_grp,),
        validated,
    )
    run_standalone(workspace, run, lambda: processor_class(validated))


# --- discovery ------------------------------------------------------------------------


def test_discovery_finds_working_ocrd_executables_only(fake_bin: Path, tmp_path: Path) -> None:
    tools = discover_external_tools(bin_dir=fake_bin, cache_file=tmp_path / "cache.json")
    assert list(tools) == ["ocrd-fake"]
    tool = tools["ocrd-fake"]
    assert tool.path == fake_bin / "ocrd-fake"
    assert tool.ocrd_tool == FAKE_TOOL
    assert tool.step == "preprocessing/optimization/binarization"
    assert tool_version(tool) == "1.2.3"


def test_discovery_follows_path_order(fake_bin: Path, tmp_path: Path) -> None:
    other = tmp_path / "other-bin"
    other_tool = dict(FAKE_TOOL, description="the shadowed one")
    script = FAKE_SCRIPT.format(python=sys.executable, tool=repr(other_tool), page=MIMETYPE_PAGE)
    write_executable(other / "ocrd-fake", script)
    search_path = os.pathsep.join([str(other), str(tmp_path / "missing"), str(fake_bin)])
    tools = discover_external_tools(search_path=search_path, use_cache=False)
    assert tools["ocrd-fake"].path == other / "ocrd-fake"
    assert tools["ocrd-fake"].ocrd_tool["description"] == "the shadowed one"


def test_discovery_cache_is_used_until_the_executable_changes(
    fake_bin: Path, tmp_path: Path
) -> None:
    cache_file = tmp_path / "cache.json"
    discover_external_tools(bin_dir=fake_bin, cache_file=cache_file)
    document = json.loads(cache_file.read_text())
    entry = document["tools"][str(fake_bin / "ocrd-fake")]
    entry["ocrd_tool"] = dict(FAKE_TOOL, description="from the cache")
    cache_file.write_text(json.dumps(document))
    cached = discover_external_tools(bin_dir=fake_bin, cache_file=cache_file)
    assert cached["ocrd-fake"].ocrd_tool["description"] == "from the cache"
    script = fake_bin / "ocrd-fake"
    status = script.stat()
    os.utime(script, ns=(status.st_atime_ns, status.st_mtime_ns + 1_000_000_000))
    probed = discover_external_tools(bin_dir=fake_bin, cache_file=cache_file)
    assert probed["ocrd-fake"].ocrd_tool["description"] == FAKE_TOOL["description"]


def test_probe_of_a_broken_executable_says_why(fake_bin: Path) -> None:
    with pytest.raises(ExternalToolError, match=r"exit code 1"):
        probe_tool(fake_bin / "ocrd-broken")


# --- running pages ----------------------------------------------------------------------


def test_pages_run_in_private_workspaces_and_are_harvested(
    workspace: Workspace, fake_bin: Path, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    run_external(workspace, fake_tool(fake_bin), {}, temp_root=scratch)
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    for number, page_id in ((1, "PHYS_0001"), (2, "PHYS_0002")):
        files = {file.id: file for file in reread.mets.find_files(file_grp="OUT", page_id=page_id)}
        page_id_out = f"OUT_{page_id}"
        image_id = f"OUT_{page_id}_IMG"
        assert set(files) == {page_id_out, image_id}
        assert files[page_id_out].href == f"OUT/{page_id_out}.xml"
        assert files[image_id].href == f"OUT/{image_id}.png"
        page_path = reread.resolve(files[page_id_out])
        assert validate_page(page_path) == []
        pcgts = parse_page(page_path)
        assert pcgts.pcgts_id == page_id_out
        assert pcgts.page.image_filename == f"OCR-D-IMG/page_{number}.png"
        assert [image.filename for image in pcgts.page.alternative_images] == [files[image_id].href]
        original = reread.resolve(reread.mets.find_files(file_grp="OCR-D-IMG", page_id=page_id)[0])
        assert reread.resolve(files[image_id]).read_bytes() == original.read_bytes()
    agent = reread.mets.agents[-1]
    assert agent.name == "ocrd-fake v1.2.3"
    assert agent.otherrole == "preprocessing/optimization/binarization"
    assert list(scratch.iterdir()) == []  # the private workspaces are gone


def test_absolute_hrefs_into_the_private_workspace_are_rewritten(
    workspace: Workspace, fake_bin: Path
) -> None:
    run_external(workspace, fake_tool(fake_bin), {"absolute": True})
    page_file = workspace.mets.find_files(
        file_grp="OUT", page_id="PHYS_0001", mimetype=MIMETYPE_PAGE
    )
    pcgts = parse_page(workspace.resolve(page_file[0]))
    assert [image.filename for image in pcgts.page.alternative_images] == [
        "OUT/OUT_PHYS_0001_IMG.png"
    ]


def test_page_input_brings_the_images_it_refers_to(
    workspace: Workspace, fake_bin: Path, tmp_path: Path
) -> None:
    run_external(workspace, fake_tool(fake_bin), {}, output_grp="FIRST")
    # The second run reads the PAGE files of FIRST; the fake tool fails if the image its
    # imageFilename names is not in its private workspace.
    run_external(workspace, fake_tool(fake_bin), {}, input_grp="FIRST", output_grp="SECOND")
    second = workspace.mets.find_files(file_grp="SECOND", mimetype=MIMETYPE_PAGE)
    assert len(second) == 2
    assert Workspace.open(workspace.mets_path).validate() == []


def test_a_failing_tool_reports_its_stderr_and_registers_nothing(
    workspace: Workspace, fake_bin: Path
) -> None:
    before = set(workspace.mets.file_groups)
    with pytest.raises(PageFailuresError) as failure:
        run_external(workspace, fake_tool(fake_bin), {"fail": True})
    message = str(failure.value)
    assert "ocrd-fake on page PHYS_0001 failed (exit code 3)" in message
    assert "the page is broken beyond repair" in message
    reread = Workspace.open(workspace.mets_path)
    assert set(reread.mets.file_groups) == before
    assert reread.validate() == []


def test_a_page_without_input_is_refused(workspace: Workspace, fake_bin: Path) -> None:
    tool = fake_tool(fake_bin)
    job = PageJob(workspace.directory, "PHYS_0001", (), ("OUT",))
    processor = external_processor_class(tool)(validate_parameters(tool.ocrd_tool, {}))
    with pytest.raises(FormatError, match="page PHYS_0001: no input file"):
        processor.process_page(job)


def test_a_tool_that_hangs_is_stopped(workspace: Workspace, tmp_path: Path) -> None:
    slow = write_executable(tmp_path / "ocrd-slow", "#!/bin/sh\necho working >&2\nexec sleep 30\n")
    tool = ExternalTool("ocrd-slow", slow, FAKE_TOOL)
    processor = external_processor_class(tool, timeout=0.5)({})
    job = page_job(workspace, "PHYS_0001", ["OCR-D-IMG"], ["OUT"])
    with pytest.raises(ExternalToolError, match=r"did not finish within 0.5 s"):
        processor.process_page(job)


# --- the real OCR-D tools ---------------------------------------------------------------


@pytest.fixture(scope="session")
def ocrd_venv_bin() -> Path:
    venv = Path(os.environ.get("OCRSWARM_OCRD_VENV", REPO / ".venv-ocrd"))
    if not (venv / "bin" / "ocrd-dummy").is_file():
        require_or_skip(f"the OCR-D tools are not installed at {venv} (run `make interop`)")
    return venv / "bin"


def real_tool(bin_dir: Path, executable: str) -> ExternalTool:
    if not (bin_dir / executable).is_file():
        require_or_skip(f"{executable} is not installed in {bin_dir} (run `make interop`)")
    return probe_tool(bin_dir / executable)


@pytest.mark.interop
def test_real_ocrd_dummy_through_our_runner(workspace: Workspace, ocrd_venv_bin: Path) -> None:
    tool = real_tool(ocrd_venv_bin, "ocrd-dummy")
    run_external(workspace, tool, {"copy_files": True})
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    for page_id in ("PHYS_0001", "PHYS_0002"):
        files = reread.mets.find_files(file_grp="OUT", page_id=page_id)
        assert sorted(file.mimetype for file in files) == sorted([MIMETYPE_PAGE, "image/png"])
        page_file = next(file for file in files if file.mimetype == MIMETYPE_PAGE)
        image_file = next(file for file in files if file.mimetype == "image/png")
        assert page_file.id == f"OUT_{page_id}"
        pcgts = parse_page(reread.resolve(page_file))
        assert pcgts.page.image_filename == image_file.href  # the copy, rewritten
        assert reread.resolve(image_file).is_file()
    assert reread.mets.agents[-1].name.startswith("ocrd-dummy v")


def character_accuracy(expected: str, actual: str) -> float:
    """1 - (edit distance / length of the expected text)."""
    previous = list(range(len(actual) + 1))
    for i, want in enumerate(expected, start=1):
        current = [i]
        for j, got in enumerate(actual, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (want != got))
            )
        previous = current
    return 1 - previous[-1] / len(expected)


@pytest.mark.interop
def test_real_ocrd_tesserocr_recognize_through_our_runner(
    tmp_path: Path, ocrd_venv_bin: Path
) -> None:
    tool = real_tool(ocrd_venv_bin, "ocrd-tesserocr-recognize")
    tessdata = ocrd_venv_bin.parent / "share" / "tessdata"
    if not (tessdata / "eng.traineddata").is_file():
        require_or_skip(f"no eng.traineddata in {tessdata} (run `make interop`)")
    lines = ["The quick brown fox jumps", "over the lazy dog while", "five wizards box quickly."]
    render_page(tmp_path / "scans" / "page.png", lines)
    workspace = Workspace.from_images(tmp_path / "scans", tmp_path / "ws")
    run_external(
        workspace,
        tool,
        {"model": "eng", "segmentation_level": "region", "textequiv_level": "line"},
        output_grp="OCR-D-OCR",
        environment={"TESSDATA_PREFIX": str(tessdata)},
    )
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    page_file = reread.mets.find_files(file_grp="OCR-D-OCR", mimetype=MIMETYPE_PAGE)[0]
    assert validate_page(reread.resolve(page_file)) == []
    pcgts = parse_page(reread.resolve(page_file))
    for image in pcgts.page.alternative_images:
        assert reread.resolve(image.filename).is_file()
    recognized = " ".join(pcgts.page.text.split())
    accuracy = character_accuracy(" ".join(lines), recognized)
    assert accuracy >= 0.95, f"{accuracy:.3f}: {recognized!r}"
