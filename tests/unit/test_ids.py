"""The OCID codec: minting, parsing with the R8.3 safe rule, and round trips (oci-behaviour.md R8)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blockvault import ids
from blockvault.errors import InvalidArgument

# "aaaaaaaa" + base32 of 35 random bytes: 64 lower-case characters, as OCI's unique parts look.
_UNIQUE = r"aaaaaaaa[a-z2-7]{56}"


def test_new_regional_ocid() -> None:
    ocid = ids.new("volume", "iad")
    assert re.fullmatch(rf"ocid1\.volume\.oc1\.iad\.{_UNIQUE}", ocid)


def test_new_global_ocid_has_an_empty_region() -> None:
    ocid = ids.new("user")
    assert re.fullmatch(rf"ocid1\.user\.oc1\.\.{_UNIQUE}", ocid)


def test_new_key_ocid_carries_the_vault_prefix_in_the_future_use_slot() -> None:
    ocid = ids.new("key", "iad", future_use="bbpqq6iuaacuu")
    assert re.fullmatch(rf"ocid1\.key\.oc1\.iad\.bbpqq6iuaacuu\.{_UNIQUE}", ocid)
    assert ids.parse(ocid).future_use == "bbpqq6iuaacuu"


def test_new_with_injected_randomness_is_deterministic() -> None:
    requested: list[int] = []

    def random(n: int) -> bytes:
        requested.append(n)
        return bytes(n)

    assert ids.new("volume", "phx", random=random) == "ocid1.volume.oc1.phx." + "a" * 64
    assert requested == [35]


def test_new_ocids_differ() -> None:
    assert len({ids.new("volume", "iad") for _ in range(50)}) == 50


def test_new_regional_type_needs_a_region() -> None:
    with pytest.raises(ValueError, match="regional"):
        ids.new("volume")


def test_new_global_type_refuses_a_region() -> None:
    with pytest.raises(ValueError, match="global"):
        ids.new("tenancy", "iad")


@pytest.mark.parametrize(
    ("text", "resource_type", "realm", "region", "future_use", "unique"),
    [
        ("ocid1.tenancy.oc1..aaaaaaaatenancy", "tenancy", "oc1", "", "", "aaaaaaaatenancy"),
        ("ocid1.volume.oc1.iad.abc", "volume", "oc1", "iad", "", "abc"),
        ("ocid1.key.oc1.iad.bbpqq6iuaacuu.abuwcljr", "key", "oc1", "iad", "bbpqq6iuaacuu", "abuwcljr"),
        ("ocid1.key.oc1.iad-ad-1.x", "key", "oc1", "iad-ad-1", "", "x"),
        ("ocid1.keyversion.oc1.eu-frankfurt-1.x_y-z", "keyversion", "oc1", "eu-frankfurt-1", "", "x_y-z"),
        ("ocid1.instance.oc2.us-langley-1.x", "instance", "oc2", "us-langley-1", "", "x"),
        ("ocid1.vault.oc1.sea.exampleaaacu2.abc.def", "vault", "oc1", "sea", "exampleaaacu2.abc", "def"),
    ],
)
def test_parse_accepts_r8_3_valid_ocids(
    text: str, resource_type: str, realm: str, region: str, future_use: str, unique: str
) -> None:
    parsed = ids.parse(text)
    assert parsed == ids.Ocid(resource_type, realm, region, future_use, unique)
    assert str(parsed) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "ocid1",
        "ocid1.volume.oc1.iad",  # no unique part
        "ocid1.volume.oc1.iad.",  # empty unique part
        "ocid2.volume.oc1.iad.x",
        "OCID1.volume.oc1.iad.x",
        "ocid1..oc1.iad.x",  # empty type
        "ocid1.volume..iad.x",  # empty realm
        " ocid1.volume.oc1.iad.x",
        "ocid1.volume.oc1.iad.x ",
        "ocid1.volume.oc1.iad.x/y",
        "ocid1.volume.oc1.iad.x:y",
        "ocid1.volume.oc1.i ad.x",
        "ocid1.volume.oc1.iad.caf\u00e9",
        "ocid1.volume.oc1.iad.x\x00",
        "volume.oc1.iad.x",
        "not an ocid",
    ],
)
def test_parse_rejects_garbage(text: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        ids.parse(text, field="volumeId")
    assert caught.value.context["field"] == "volumeId"


def test_parse_rejects_a_trailing_newline() -> None:
    for text in ("ocid1.volume.oc1.iad.x\n", "ocid1.volume.oc1.iad\n.x"):
        try:
            ids.parse(text)
        except InvalidArgument:
            continue
        raise AssertionError(f"{text!r} was accepted")


def test_expect_checks_the_type() -> None:
    assert ids.expect("ocid1.volume.oc1.iad.x", "volume", "bootvolume").resource_type == "volume"
    with pytest.raises(InvalidArgument) as caught:
        ids.expect("ocid1.volume.oc1.iad.x", "key", field="kmsKeyId")
    assert caught.value.context["field"] == "kmsKeyId"


_REGIONS = st.sampled_from(["iad", "phx", "fra", "eu-frankfurt-1", "us-ashburn-1", "iad-ad-1"])
_FUTURE_USE = st.one_of(st.just(""), st.from_regex(r"[a-z0-9]{1,20}", fullmatch=True))
_RANDOM = st.binary(min_size=35, max_size=35)


@st.composite
def minted(draw: st.DrawFn) -> tuple[str, str, str, str]:
    """(ocid, type, region, future_use) for a freshly minted OCID of any type we mint."""
    resource_type = draw(st.sampled_from(sorted(ids.REGIONAL_TYPES | ids.GLOBAL_TYPES)))
    regional = resource_type in ids.REGIONAL_TYPES
    region = draw(_REGIONS) if regional else ""
    future_use = draw(_FUTURE_USE) if regional else ""
    random = draw(_RANDOM)
    ocid = ids.new(resource_type, region, future_use=future_use, random=lambda n: random[:n])
    return ocid, resource_type, region, future_use


@settings(max_examples=200)
@given(minted())
def test_minted_ocids_round_trip(case: tuple[str, str, str, str]) -> None:
    ocid, resource_type, region, future_use = case
    parsed = ids.parse(ocid)
    assert str(parsed) == ocid
    assert (parsed.resource_type, parsed.realm, parsed.region, parsed.future_use) == (
        resource_type,
        ids.REALM,
        region,
        future_use,
    )
    assert re.fullmatch(_UNIQUE, parsed.unique)
