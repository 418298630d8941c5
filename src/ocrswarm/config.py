"""The one configuration file of a deployment (TOML), read by `ocrswarm serve --config` and
`ocrswarm worker --config`; options on the command line override it.

    [queue]
    url = "amqp://ocrswarm:secret@mq.example.org/"     # RabbitMQ: distributed mode

    [database]
    url = "postgresql://ocrswarm:secret@db.example.org/ocrswarm"

    [server]                                          # see ocrswarm.server.settings
    data_dir = "/srv/ocrswarm"
    workers = 0                                       # local workers of the server itself

    [worker]                                          # `ocrswarm worker`
    processors = ["ocrd-swarm-recognize"]             # default: every one it can run
    jobs = 4                                          # worker processes (pages at a time)
    id = "ocr-7"                                      # default: host:pid:random
    path_map = ["/srv/ocrswarm=/mnt/ocrswarm"]        # server path prefix = local prefix
    server = "https://ocr.example.org"                # HTTP file transfer (no shared dir)
    token = "…"                                       # a token of the role worker
    mirror_dir = "/var/cache/ocrswarm/mirror"         # its local copies of the files

Every table is optional; a wrong table, key or value is a UsageError that names it.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from ocrswarm.errors import UsageError

TABLES = ("server", "queue", "database", "worker")


@dataclass(frozen=True, slots=True)
class PathMap:
    """Where a worker finds the server's files: `server` prefix → `local` prefix."""

    server: PurePosixPath
    local: Path

    @classmethod
    def parse(cls, text: str, where: str = "--path-map") -> PathMap:
        server, equals, local = text.partition("=")
        if not equals or not server.startswith("/") or not local:
            raise UsageError(f"{where}: expected SERVER_PREFIX=LOCAL_PREFIX, got {text!r}")
        return cls(PurePosixPath(server), Path(local).absolute())

    def apply(self, path: Path) -> Path:
        """`path` with the server prefix replaced; other paths unchanged."""
        try:
            rest = PurePosixPath(path).relative_to(self.server)
        except ValueError:
            return path
        return self.local / rest


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    processors: tuple[str, ...] = ()  # empty: every processor this machine can run
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    id: str | None = None  # default: host:pid:random
    path_map: tuple[PathMap, ...] = ()
    server_url: str | None = None  # HTTP file transfer, for a worker without shared files
    token: str | None = None
    mirror_dir: Path | None = None  # HTTP file transfer: the local copies (default: cache)
    lease_seconds: float = 60.0

    def with_overrides(self, **values: Any) -> WorkerSettings:
        """A copy with the given non-None (and non-empty) values applied."""
        given = {k: v for k, v in values.items() if v is not None and v != ()}
        return replace(self, **given)

    def local_path(self, path: Path) -> Path:
        """Where this worker finds a server path (the first matching path map wins)."""
        for mapping in self.path_map:
            mapped = mapping.apply(path)
            if mapped is not path:
                return mapped
        return path


@dataclass(frozen=True, slots=True)
class Configuration:
    queue_url: str | None = None
    database_url: str | None = None
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    server: Mapping[str, Any] = field(default_factory=dict)  # checked by server.settings
    source: Path | None = None


def read_document(path: Path) -> dict[str, Any]:
    """The TOML document of `path`, with its top-level tables checked."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as error:
        raise UsageError(f"cannot read the configuration {path}: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path} is not valid TOML: {error}") from None
    for key, value in document.items():
        if key not in TABLES:
            raise UsageError(f"{path}: {key}: unknown table; known: {', '.join(TABLES)}")
        if not isinstance(value, dict):
            raise UsageError(f"{path}: [{key}] must be a table")
    return document


def load_configuration(path: Path | None) -> Configuration:
    """The configuration in `path`, or the defaults without one."""
    if path is None:
        return Configuration()
    document = read_document(path)
    queue_url = _url_table(document, "queue", path, ("amqp://", "amqps://"))
    database_url = _url_table(document, "database", path, ("postgresql", "sqlite:///"))
    return Configuration(
        queue_url=queue_url,
        database_url=database_url,
        worker=worker_settings(document.get("worker", {}), where=f"{path}: worker"),
        server=document.get("server", {}),
        source=path,
    )


def _url_table(
    document: Mapping[str, Any], table: str, path: Path, schemes: tuple[str, ...]
) -> str | None:
    values = document.get(table, {})
    for key in values:
        if key != "url":
            raise UsageError(f"{path}: {table}.{key}: unknown setting; known: url")
    if "url" not in values:
        return None
    url = values["url"]
    if not isinstance(url, str) or not url.startswith(schemes):
        expected = " or ".join(scheme if "/" in scheme else f"{scheme}://" for scheme in schemes)
        raise UsageError(f"{path}: {table}.url: expected a URL starting {expected}")
    return url


_WORKER_KEYS = (
    "processors",
    "jobs",
    "id",
    "path_map",
    "server",
    "token",
    "mirror_dir",
    "lease_seconds",
)


def worker_settings(table: Mapping[str, Any], *, where: str = "worker") -> WorkerSettings:
    """Settings from a `[worker]` table; UsageError naming the first wrong key."""
    values: dict[str, Any] = {}
    for key, value in table.items():
        at = f"{where}.{key}"
        if key not in _WORKER_KEYS:
            raise UsageError(f"{at}: unknown setting; known: {', '.join(_WORKER_KEYS)}")
        if key == "processors":
            if not isinstance(value, list) or not all(
                isinstance(v, str) and v.startswith("ocrd-") for v in value
            ):
                raise UsageError(f"{at}: expected a list of processor names (ocrd-…)")
            values["processors"] = tuple(value)
        elif key == "jobs":
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise UsageError(f"{at}: must be a positive integer, not {value!r}")
            values["jobs"] = value
        elif key == "lease_seconds":
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 5:
                raise UsageError(f"{at}: must be a number of seconds, at least 5")
            values["lease_seconds"] = float(value)
        elif key == "path_map":
            if not isinstance(value, list):
                raise UsageError(f'{at}: expected a list of "SERVER_PREFIX=LOCAL_PREFIX"')
            values["path_map"] = tuple(PathMap.parse(str(item), at) for item in value)
        elif key == "mirror_dir":
            if not isinstance(value, str) or not value:
                raise UsageError(f"{at}: expected a directory")
            values["mirror_dir"] = Path(value).absolute()
        else:
            if not isinstance(value, str) or not value:
                raise UsageError(f"{at}: expected a non-empty string")
            if key == "server" and not value.startswith(("http://", "https://")):
                raise UsageError(f"{at}: expected an http:// or https:// URL")
            values["server_url" if key == "server" else key] = value
    return WorkerSettings(**values)
