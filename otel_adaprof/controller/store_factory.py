"""The one place where a database URL becomes a store.

``--db`` (or ``database.path`` in the configuration) is either a file path (SQLite,
the default) or a URL whose scheme names the store: ``sqlite:///abs/path.db`` or
``sqlite:relative.db``. A scheme without a store is refused before the controller
starts, with an error naming the option. A new store registers its schemes in
:data:`OPENERS`.

Usage::

    >>> store_scheme("adaprof.db"), store_scheme("sqlite:///var/lib/a.db")
    ('sqlite', 'sqlite')
    >>> try:
    ...     check_database_url("mysql://db/adaprof", "--db")
    ... except ContractError as exc:
    ...     print(exc.field, "|", exc.problems[0][1])
    --db | unsupported database URL scheme 'mysql' (supported: a file path, sqlite)
    >>> store = open_store(":memory:")
    >>> store.ping(); store.close()
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from otel_adaprof.controller.store import Store
from otel_adaprof.controller.store_api import ControllerStore
from otel_adaprof.errors import ContractError

#: ``scheme:`` at the start of a URL (two letters at least, so ``C:\\x.db`` is a path).
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")

Opener = Callable[[str, int], ControllerStore]  # (url, report_retention) -> store


def _sqlite_path(url: str) -> str:
    """The file of a SQLite URL or path (``sqlite:///abs``, ``sqlite:rel``, ``path``)."""
    if store_scheme(url) != "sqlite" or not _SCHEME.match(url):
        return url
    rest = url.split(":", 1)[1]
    if rest.startswith("//"):
        rest = rest[2:]  # sqlite:///abs/path -> /abs/path
    if not rest:
        raise ContractError([("--db", f"no file in database URL {url!r}")])
    return rest


def _open_sqlite(url: str, report_retention: int) -> ControllerStore:
    return Store(_sqlite_path(url), report_retention=report_retention)


#: URL scheme -> how to open that store.
OPENERS: dict[str, Opener] = {"sqlite": _open_sqlite}


def store_scheme(url: str) -> str:
    """The URL's scheme, lower-cased (``"sqlite"`` for a plain file path)."""
    match = _SCHEME.match(url)
    if match is None or url.startswith("file:"):
        return "sqlite"
    return match.group(1).lower()


def check_database_url(url: str, option: str = "database.path") -> None:
    """Raise :class:`ContractError` naming ``option`` when no store serves ``url``."""
    scheme = store_scheme(url)
    if scheme not in OPENERS:
        supported = ", ".join(["a file path", *sorted(OPENERS)])
        raise ContractError(
            [(option, f"unsupported database URL scheme {scheme!r} (supported: {supported})")]
        )
    if scheme == "sqlite":
        try:
            _sqlite_path(url)
        except ContractError as exc:
            raise ContractError([(option, exc.problems[0][1])]) from None


def describe_database(url: str) -> str:
    """What the start line shows: the absolute file, or the URL without its password."""
    if store_scheme(url) == "sqlite":
        path = _sqlite_path(url)
        return path if path == ":memory:" or path.startswith("file:") else str(Path(path).resolve())
    return re.sub(r"(//[^/:@]*):[^@/]*@", r"\1:***@", url)


def open_store(url: str, *, report_retention: int = 100_000) -> ControllerStore:
    """Open the store ``url`` names (see the module doc)."""
    check_database_url(url)
    return OPENERS[store_scheme(url)](url, report_retention)
