"""Elixir's ``Version``: strict SemVer parsing, requirements, and serializer negotiation.

A version is ``MAJOR.MINOR.PATCH[-PRE][+BUILD]``: the three numbers are ASCII digits
without leading zeros, pre-release and build parts are dot-separated non-empty
``[0-9A-Za-z-]`` identifiers, and a numeric pre-release part may not have a leading zero.
So ``"2.0"``, ``"v2.0.0"``, ``"01.0.0"`` and ``"abc"`` are invalid. Build metadata is kept
but never compared; a pre-release sorts before its release, and pre-release parts compare
numerically when numeric, which sort before alphanumeric ones (Erlang's term order).

A requirement is clauses ``[op] version`` joined by ``" and "``/``" or "``, lexed as
Elixir lexes them (``op`` is one of ``== != > >= < <= ~>``, ``!`` meaning ``!=``; no op means
``==``; spaces are ignored except inside ``" and "``/``" or "``). Only ``~>`` may omit the
patch: ``~> 2.0.0`` means ``>= 2.0.0 and < 2.1.0`` and ``~> 2.0`` means ``>= 2.0.0 and
< 3.0.0``, never matching a pre-release of the upper bound. Like Elixir's, ``and`` and ``or``
have no precedence and group from the right: ``a and b or c`` is ``a and (b or c)``. With
``allow_pre`` (the default, as in Phoenix's call) pre-releases match like any version.

Elixir accepts a few malformed requirements that then crash when matched (one starting
with ``" or "``, or with two joiners in a row); those are rejected here with the rest.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ._protocol import Serializer

__all__ = [
    "Requirement",
    "Version",
    "negotiate",
    "parse_requirement",
    "parse_version",
    "validate_serializers",
    "version_match",
]

logger = logging.getLogger("transport.serializers")

_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)")
_IDENTIFIER = re.compile(r"[0-9A-Za-z-]+")


@dataclass(frozen=True, slots=True)
class Version:
    """A parsed version. ``patch`` is None only for a ``~>`` operand like ``2.0``."""

    major: int
    minor: int
    patch: int | None
    pre: tuple[int | str, ...] = ()
    build: tuple[str, ...] = ()

    @property
    def _key(self) -> tuple:
        return (
            self.major,
            self.minor,
            self.patch or 0,
            not self.pre,  # a release sorts after its pre-releases
            tuple((1, p) if isinstance(p, str) else (0, p) for p in self.pre),
        )

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}"
        if self.patch is not None:
            text += f".{self.patch}"
        if self.pre:
            text += "-" + ".".join(str(p) for p in self.pre)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


def compare(left: Version, right: Version) -> int:
    """-1, 0 or 1 as ``left`` sorts before, with or after ``right`` (build ignored)."""
    a, b = left._key, right._key
    return (a > b) - (a < b)


def _parse(string: str, approximate: bool) -> Version | None:
    if not isinstance(string, str):
        return None
    head, plus, build = string.partition("+")
    numbers, dash, pre = head.partition("-")
    parts = numbers.split(".")
    if len(parts) > 3 or len(parts) < 2:
        return None
    if len(parts) == 2 and not approximate:
        return None
    if not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    pre_parts: list[int | str] = []
    if dash:
        for part in pre.split("."):
            if not _IDENTIFIER.fullmatch(part):
                return None
            if part.isdigit():  # ASCII here: _IDENTIFIER matched
                if len(part) > 1 and part[0] == "0":
                    return None
                pre_parts.append(int(part))
            else:
                pre_parts.append(part)
    build_parts: tuple[str, ...] = ()
    if plus:
        build_parts = tuple(build.split("."))
        if not all(_IDENTIFIER.fullmatch(p) for p in build_parts):
            return None
    patch = int(parts[2]) if len(parts) == 3 else None
    return Version(int(parts[0]), int(parts[1]), patch, tuple(pre_parts), build_parts)


def parse_version(string: str) -> Version:
    """Parse a strict SemVer version (Elixir's ``Version.parse``); ValueError if invalid."""
    version = _parse(string, False)
    if version is None:
        raise ValueError(f"invalid version: {string!r}")
    return version


_OPERATORS = (
    (">=", ">="),
    ("<=", "<="),
    ("~>", "~>"),
    (">", ">"),
    ("<", "<"),
    ("==", "=="),
    ("!=", "!="),
    ("!", "!="),
    (" or ", "or"),
    (" and ", "and"),
)
_JOINERS = ("or", "and")


def _lex(source: str) -> list[tuple[bool, str]]:
    """Elixir's requirement lexer: a list of (is_operator, text)."""
    tokens: list[tuple[bool, str]] = []
    i, n = 0, len(source)
    while i < n:
        for text, op in _OPERATORS:
            if source.startswith(text, i):
                tokens.append((True, op))
                i += len(text)
                break
        else:
            char = source[i]
            i += 1
            if char == " ":
                continue
            if not tokens:
                tokens += [(True, "=="), (False, char)]
            elif not tokens[-1][0]:
                tokens[-1] = (False, tokens[-1][1] + char)
            elif tokens[-1][1] in _JOINERS:
                tokens += [(True, "=="), (False, char)]
            else:
                tokens.append((False, char))
    return tokens


@dataclass(frozen=True, slots=True)
class Requirement:
    """A parsed requirement: ``clauses[0] joiners[0] clauses[1] ...``, grouped from the right."""

    source: str
    clauses: tuple[tuple[str, Version], ...]
    joiners: tuple[str, ...]

    def match(self, version: Version | str, allow_pre: bool = True) -> bool:
        """Whether ``version`` satisfies this requirement (Elixir's ``Version.match?``)."""
        if not isinstance(version, Version):
            version = parse_version(version)
        clauses, joiners = self.clauses, self.joiners
        result = _match_op(*clauses[-1], version, allow_pre)
        for index in range(len(joiners) - 1, -1, -1):
            here = _match_op(*clauses[index], version, allow_pre)
            result = (here and result) if joiners[index] == "and" else (here or result)
        return result

    def __str__(self) -> str:
        return self.source


def _match_op(op: str, req: Version, version: Version, allow_pre: bool) -> bool:
    pre_ok = allow_pre or bool(req.pre) or not version.pre
    if op == "==":
        return compare(version, req) == 0
    if op == "!=":
        return compare(version, req) != 0
    if op == "~>":
        if req.patch is None:
            lower = Version(req.major, req.minor, 0, req.pre)
            upper = Version(req.major + 1, 0, 0, (0,))
        else:
            lower = req
            upper = Version(req.major, req.minor + 1, 0, (0,))
        return compare(version, lower) >= 0 and compare(version, upper) < 0 and pre_ok
    if op == ">":
        return compare(version, req) > 0 and pre_ok
    if op == ">=":
        return compare(version, req) >= 0 and pre_ok
    if op == "<":
        return compare(version, req) < 0
    return compare(version, req) <= 0  # "<="


@functools.lru_cache(maxsize=256)
def parse_requirement(source: str) -> Requirement:
    """Parse a requirement like ``"~> 2.0.0"``; ValueError if it is not one."""
    if not isinstance(source, str):
        raise TypeError(f"a requirement is a str, got {source!r}")
    tokens = _lex(source)
    clauses: list[tuple[str, Version]] = []
    joiners: list[str] = []
    # The grammar: op version (joiner op version)*
    i = 0
    while True:
        if i + 1 >= len(tokens) or not tokens[i][0] or tokens[i + 1][0]:
            raise ValueError(f"invalid requirement: {source!r}")
        op, text = tokens[i][1], tokens[i + 1][1]
        if op in _JOINERS:
            raise ValueError(f"invalid requirement: {source!r}")
        version = _parse(text, True)
        if version is None or (version.patch is None and op != "~>"):
            raise ValueError(f"invalid requirement: {source!r} (bad version {text!r})")
        clauses.append((op, version))
        i += 2
        if i == len(tokens):
            break
        if not tokens[i][0] or tokens[i][1] not in _JOINERS:
            raise ValueError(f"invalid requirement: {source!r}")
        joiners.append(tokens[i][1])
        i += 1
    return Requirement(source, tuple(clauses), tuple(joiners))


def version_match(version: Version | str, requirement: Requirement | str, allow_pre: bool = True) -> bool:
    """Elixir's ``Version.match?``: ValueError if either string is invalid."""
    if not isinstance(requirement, Requirement):
        requirement = parse_requirement(requirement)
    return requirement.match(version, allow_pre)


_Entry = tuple[Serializer, str | Requirement]


def validate_serializers(serializers: Iterable[_Entry]) -> list[_Entry]:
    """Check a socket's ``serializer`` option when it is defined; return it as a list.

    Each entry is ``(serializer, requirement)``. A requirement that does not parse is a
    ValueError, a serializer without ``vsn``/``fastlane``/``encode``/``decode`` (or not
    hashable, since the fastlane cache is keyed by it) a TypeError.
    """
    entries = list(serializers)
    for entry in entries:
        if not isinstance(entry, tuple) or len(entry) != 2:
            raise TypeError(f"a serializer entry is (serializer, requirement), got {entry!r}")
        serializer, requirement = entry
        if not isinstance(serializer, Serializer):
            raise TypeError(f"{serializer!r} is not a serializer (needs vsn, fastlane, encode, decode)")
        hash(serializer)
        if not isinstance(requirement, Requirement):
            try:
                parse_requirement(requirement)
            except ValueError as exc:
                raise ValueError(f"{exc} for serializer {serializer!r}") from None
    return entries


def negotiate(serializers: Iterable[_Entry], vsn: str | None) -> Serializer | None:
    """The first serializer whose requirement ``vsn`` matches, as Phoenix's socket picks one.

    ``vsn`` is the client's ``vsn`` parameter; None (absent) means ``"1.0.0"``, while an
    empty or malformed one matches nothing (Phoenix treats only a missing one as 1.0.0).
    Returns None when nothing matches; the socket then refuses the connection.
    """
    if vsn is None:
        vsn = "1.0.0"
    entries = tuple(serializers)
    try:
        # Every client of an app sends one of a few vsn strings: parse and match once each.
        found = _pick(entries, vsn)
    except TypeError:  # an unhashable entry (validate_serializers was skipped)
        found = _pick.__wrapped__(entries, vsn)
    if found is _INVALID:
        logger.warning("Client sent invalid transport version %r", vsn)
        return None
    if found is not None:
        return found
    logger.warning(
        "The client's requested transport version %r does not match the server's requirements %s",
        vsn,
        [(s, str(r)) for s, r in entries],
    )
    return None


_INVALID = object()


@functools.lru_cache(maxsize=64)
def _pick(entries: tuple, vsn: Any) -> Any:
    version = _parse(vsn, False)
    if version is None:
        return _INVALID
    for serializer, requirement in entries:
        if not isinstance(requirement, Requirement):
            requirement = parse_requirement(requirement)
        if requirement.match(version):
            return serializer
    return None
