"""Elixir's Version rules and Phoenix's serializer negotiation by the client's vsn."""

from __future__ import annotations

import itertools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transport.serializers import (
    DEFAULT_SERIALIZERS,
    V1,
    V2,
    Requirement,
    Version,
    negotiate,
    parse_requirement,
    parse_version,
    validate_serializers,
    version_match,
)
from transport.serializers._version import compare

# --- parsing ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1.0.0", Version(1, 0, 0)),
        ("0.0.0", Version(0, 0, 0)),
        ("10.20.30", Version(10, 20, 30)),
        ("2.0.1-alpha1", Version(2, 0, 1, ("alpha1",))),
        ("1.0.0-alpha.3", Version(1, 0, 0, ("alpha", 3))),
        ("1.0.0-0.3.7", Version(1, 0, 0, (0, 3, 7))),
        ("1.0.0-x-y-z.--", Version(1, 0, 0, ("x-y-z", "--"))),
        ("1.0.0-0a", Version(1, 0, 0, ("0a",))),
        ("1.0.0-alpha.3+20130417140000.amd64", Version(1, 0, 0, ("alpha", 3), ("20130417140000", "amd64"))),
        ("1.0.0+build-1", Version(1, 0, 0, (), ("build-1",))),
        ("1.0.0+001", Version(1, 0, 0, (), ("001",))),
    ],
)
def test_parse_valid_versions(text, expected):
    assert parse_version(text) == expected
    assert str(parse_version(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "2.0",
        "2",
        "abc",
        "",
        "1.0.0.0",
        "01.0.0",
        "1.00.0",
        "1.0.00",
        "v1.0.0",
        " 1.0.0",
        "1.0.0 ",
        "1.0.0\n",
        "1 .0.0",
        "1.0.0-",
        "1.0.0+",
        "1.0.0-01",
        "1.0.0-00",
        "1.0.0-a..b",
        "1.0.0-a.",
        "1.0.0-rc_1",
        "1.0.0-α",
        "1.0.0+a+b",
        "1.0.0+a..b",
        "１.0.0",
        "1.-1.0",
        "-1.0.0",
        "1.0.x",
        "1.0.0-rc 1",
    ],
)
def test_parse_invalid_versions(text):
    with pytest.raises(ValueError, match="invalid version"):
        parse_version(text)


@pytest.mark.parametrize("value", [None, 1.0, b"1.0.0", ["1.0.0"]])
def test_parse_refuses_non_strings(value):
    with pytest.raises(ValueError):
        parse_version(value)  # type: ignore[arg-type]


# --- ordering --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "left, right, result",
    [
        ("2.0.1-alpha1", "2.0.0", 1),
        ("1.0.0-beta", "1.0.0-rc1", -1),
        ("1.0.0-10", "1.0.0-2", 1),
        ("2.0.1+build0", "2.0.1", 0),
        ("1.0.0", "1.0.0-rc.1", 1),
        ("1.10.0", "1.9.0", 1),
    ],
)
def test_compare_as_elixir_docs(left, right, result):
    assert compare(parse_version(left), parse_version(right)) == result
    assert compare(parse_version(right), parse_version(left)) == -result


def test_semver_precedence_chain():
    chain = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
        "1.0.1",
        "1.1.0",
        "2.0.0",
    ]
    versions = [parse_version(v) for v in chain]
    for lower, higher in itertools.pairwise(versions):
        assert compare(lower, higher) == -1


# --- requirements ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "requirement, version, allow_pre, matches",
    [
        # The table in Elixir's Version docs.
        ("~> 2.0", "2.1.0", True, True),
        ("~> 2.0", "2.1.0", False, True),
        ("~> 2.0", "3.0.0", True, False),
        ("~> 2.0.0", "2.0.5", True, True),
        ("~> 2.0.0", "2.0.5", False, True),
        ("~> 2.0.0", "2.1.0", True, False),
        ("~> 2.1.2", "2.1.6-dev", True, True),
        ("~> 2.1.2", "2.1.6-dev", False, False),
        ("~> 2.1-dev", "2.2.0-dev", True, True),
        ("~> 2.1-dev", "2.2.0-dev", False, True),
        ("~> 2.1.2-dev", "2.1.6-dev", False, True),
        (">= 2.1.0", "2.2.0-dev", True, True),
        (">= 2.1.0", "2.2.0-dev", False, False),
        (">= 2.1.0-dev", "2.2.6-dev", False, True),
        # ~> translations.
        ("~> 2.0.0", "2.0.0", True, True),
        ("~> 2.0.0", "1.9.9", True, False),
        ("~> 2.0.0", "2.0.0-rc.1", True, False),
        ("~> 2.0.0", "2.1.0-dev", True, False),  # never a pre-release of the upper bound
        ("~> 2.0.0", "2.1.0-0", True, False),
        ("~> 2.0", "2.0.0", True, True),
        ("~> 2.0", "2.99.99", True, True),
        ("~> 2.0", "3.0.0-rc.0", True, False),
        ("~> 2.0", "1.99.0", True, False),
        ("~> 2.1", "2.0.9", True, False),
        ("~> 2.1.3-dev", "2.1.3-dev", True, True),
        ("~> 2.1.3-dev", "2.1.3-alpha", True, False),
        # Plain operators.
        ("== 1.0.0", "1.0.0", True, True),
        ("== 1.0.0", "1.0.0+build.5", True, True),
        ("== 1.0.0", "1.0.1", True, False),
        ("1.0.0", "1.0.0", True, True),
        ("!= 1.0.0", "1.0.1", True, True),
        ("!= 1.0.0", "1.0.0", True, False),
        ("!1.0.0", "1.0.0", True, False),
        ("> 1.0.0", "1.0.1", True, True),
        ("> 1.0.0", "1.0.0", True, False),
        ("> 1.0.0-rc.1", "1.0.0", True, True),
        ("< 2.0.0", "2.0.0-rc.1", True, True),
        ("<= 2.0.0", "2.0.0", True, True),
        ("<= 2.0.0", "2.0.1", True, False),
        (">=2.0.0", "2.0.0", True, True),
        (">= 2.0.0 and < 3.0.0", "2.5.0", True, True),
        (">= 2.0.0 and < 3.0.0", "3.0.0", True, False),
        (">= 2.0.0 and < 3.0.0", "1.0.0", True, False),
        ("== 1.0.0 or == 2.0.0", "2.0.0", True, True),
        ("== 1.0.0 or 2.0.0", "2.0.0", True, True),
        ("~> 1.0.0 or ~> 2.0.0", "2.0.3", True, True),
        ("~> 1.0.0 or ~> 2.0.0", "1.1.0", True, False),
        # No precedence: grouped from the right, as Elixir evaluates the lexed list.
        ("== 1.0.0 or == 2.0.0 and == 3.0.0", "1.0.0", True, True),
        ("== 1.0.0 and == 2.0.0 or == 1.0.0", "2.0.0", True, False),
        ("== 1.0.0 and == 2.0.0 or == 1.0.0", "1.0.0", True, True),
    ],
)
def test_requirements_match_as_elixir(requirement, version, allow_pre, matches):
    assert version_match(version, requirement, allow_pre=allow_pre) is matches
    assert parse_requirement(requirement).match(parse_version(version), allow_pre) is matches


@pytest.mark.parametrize(
    "requirement",
    [
        "",
        " ",
        "~>",
        "~> 2",
        ">= 2.0",
        "2.0",
        "== 2.0",
        "abc",
        "== == 1.0.0",
        ">= > 1.0.0",
        ">= 1.0.0 or",
        ">= 1.0.0 and",
        " or 1.0.0",
        " and 1.0.0",
        "1.0.0 and and 2.0.0",
        "== 1.0.0 or  or == 2.0.0",
        "1.0.0 1.0.0",
        ">= 1.0.0 || < 2.0.0",
        ">= 1.0.0 && < 2.0.0",
        ">= 1.0.0,< 2.0.0",
        "^1.0.0",
        "~> 2.0.0-",
        "=> 1.0.0",
        ">= 01.0.0",
        "~> v2.0",
    ],
)
def test_invalid_requirements_raise_value_error(requirement):
    with pytest.raises(ValueError, match="invalid requirement"):
        parse_requirement(requirement)


def test_match_with_an_invalid_version_raises():
    with pytest.raises(ValueError, match="invalid version"):
        version_match("2.0", "~> 2.0.0")


def test_requirement_keeps_its_source():
    requirement = parse_requirement(">= 2.0.0 and < 3.0.0")
    assert isinstance(requirement, Requirement)
    assert str(requirement) == ">= 2.0.0 and < 3.0.0"
    assert len(requirement.clauses) == 2 and requirement.joiners == ("and",)


# --- negotiation -----------------------------------------------------------------------


def test_default_serializers_are_phoenix_defaults():
    assert DEFAULT_SERIALIZERS == [(V1, "~> 1.0.0"), (V2, "~> 2.0.0")]


@pytest.mark.parametrize(
    "vsn, expected",
    [
        (None, V1),
        ("1.0.0", V1),
        ("1.0.9", V1),
        ("1.0.1-dev", V1),
        ("2.0.0", V2),
        ("2.0.3", V2),
        ("2.0.0+build.7", V2),
        ("2.0.1-rc.0", V2),
        ("2.0.0-rc.1", None),  # sorts before 2.0.0
        ("1.1.0", None),
        ("2.1.0", None),
        ("3.0.0", None),
        ("0.9.0", None),
        ("2.0", None),
        ("2", None),
        ("abc", None),
        ("", None),  # only an absent vsn defaults to 1.0.0, as in Phoenix
        (" 2.0.0", None),
    ],
)
def test_negotiate_with_the_default_serializers(vsn, expected):
    assert negotiate(DEFAULT_SERIALIZERS, vsn) is expected


def test_negotiate_takes_the_first_match_and_accepts_parsed_requirements():
    both = [(V2, ">= 1.0.0 and < 3.0.0"), (V1, "~> 1.0")]
    assert negotiate(both, "1.0.0") is V2
    assert negotiate(list(reversed(both)), "1.0.0") is V1
    assert negotiate([(V1, parse_requirement("~> 1.0"))], "1.5.0") is V1
    assert negotiate([(V2, "== 2.0.0 or == 2.2.0")], "2.2.0") is V2
    assert negotiate(iter([(V2, "~> 2.0")]), "2.7.1") is V2
    assert negotiate([], "1.0.0") is None


def test_negotiate_logs_why_it_refuses(caplog):
    with caplog.at_level(logging.WARNING, logger="transport.serializers"):
        assert negotiate(DEFAULT_SERIALIZERS, "2.0") is None
        assert negotiate(DEFAULT_SERIALIZERS, "3.0.0") is None
    assert "invalid transport version '2.0'" in caplog.text
    assert "'3.0.0' does not match" in caplog.text


def test_negotiate_never_returns_for_a_non_string_vsn():
    assert negotiate(DEFAULT_SERIALIZERS, ["2.0.0"]) is None  # type: ignore[arg-type]


def test_validate_serializers_checks_at_definition_time():
    assert validate_serializers(((V2, "~> 2.0.0"),)) == [(V2, "~> 2.0.0")]
    with pytest.raises(ValueError, match="invalid requirement: '2.0'"):
        validate_serializers([(V1, "~> 1.0.0"), (V2, "2.0")])
    with pytest.raises(TypeError, match="not a serializer"):
        validate_serializers([(object(), "~> 1.0.0")])
    with pytest.raises(TypeError, match="serializer, requirement"):
        validate_serializers([V1])


# --- properties ------------------------------------------------------------------------

_numbers = st.integers(0, 10**6)
_identifiers = st.from_regex(r"[0-9A-Za-z-]{1,6}", fullmatch=True).filter(
    lambda s: not (s.isdigit() and len(s) > 1 and s[0] == "0")
)
_versions = st.builds(
    lambda major, minor, patch, pre, build: (
        f"{major}.{minor}.{patch}" + (("-" + ".".join(pre)) if pre else "") + (("+" + ".".join(build)) if build else "")
    ),
    _numbers,
    _numbers,
    _numbers,
    st.lists(_identifiers, max_size=3),
    st.lists(_identifiers, max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(_versions)
def test_generated_versions_parse_and_print_back(text):
    assert str(parse_version(text)) == text
    version = parse_version(text)
    assert version_match(version, f"== {text}")
    assert version_match(version, f">= {text} and <= {text}")


@settings(max_examples=300, deadline=None)
@given(_versions, _versions)
def test_compare_is_antisymmetric_and_consistent_with_operators(left, right):
    a, b = parse_version(left), parse_version(right)
    assert compare(a, b) == -compare(b, a)
    core = f"{b.major}.{b.minor}.{b.patch}" + ("-" + ".".join(map(str, b.pre)) if b.pre else "")
    assert version_match(a, f"> {core}") is (compare(a, b) > 0)
    assert version_match(a, f"< {core}") is (compare(a, b) < 0)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=20), _versions, st.none()))
def test_negotiate_never_raises_on_client_input(vsn):
    assert negotiate(DEFAULT_SERIALIZERS, vsn) in (V1, V2, None)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet=" <>=~!.0123456789-+aordn", max_size=24))
def test_parse_requirement_raises_only_value_error(source):
    try:
        requirement = parse_requirement(source)
    except ValueError:
        return
    requirement.match("1.0.0")
