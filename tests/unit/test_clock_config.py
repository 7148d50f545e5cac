"""The injectable clock, the wire time format, and Settings parsed once from the environment (STYLE §2.4)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from blockvault.clock import OffsetClock, SystemClock, parse_wire, to_wire
from blockvault.config import DEFAULT_PORT, DEFAULT_REGIONS, RegionSettings, Settings, parse_bool
from blockvault.errors import InvalidArgument

T0 = datetime(2025, 6, 30, 23, 59, 58, 987654, tzinfo=UTC)
WIRE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


# --- clock ---------------------------------------------------------------------------------------------------------


def test_offset_clock_without_offset_is_its_base() -> None:
    clock = OffsetClock(base=lambda: T0)
    assert clock.now() == T0
    assert clock.offset == timedelta(0)


def test_offset_clock_advances() -> None:
    clock = OffsetClock(base=lambda: T0)
    assert clock.advance(timedelta(days=7)) == T0 + timedelta(days=7)
    assert clock.advance(timedelta(seconds=3)) == T0 + timedelta(days=7, seconds=3)
    assert clock.now() == T0 + timedelta(days=7, seconds=3)
    assert clock.offset == timedelta(days=7, seconds=3)
    clock.advance(timedelta(0))
    assert clock.now() == T0 + timedelta(days=7, seconds=3)


def test_offset_clock_starts_from_an_initial_offset() -> None:
    assert OffsetClock(base=lambda: T0, offset=timedelta(hours=1)).now() == T0 + timedelta(hours=1)


def test_offset_clock_refuses_to_go_back() -> None:
    clock = OffsetClock(base=lambda: T0)
    clock.advance(timedelta(days=1))
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-timedelta(microseconds=1))
    assert clock.now() == T0 + timedelta(days=1)


def test_offset_clock_follows_the_system_clock_by_default() -> None:
    clock = OffsetClock()
    clock.advance(timedelta(days=30))
    now = clock.now()
    assert now.tzinfo is not None
    assert abs(now - (SystemClock().now() + timedelta(days=30))) < timedelta(minutes=1)


def test_system_clock_is_aware_utc() -> None:
    assert SystemClock().now().utcoffset() == timedelta(0)


# --- wire format -------------------------------------------------------------------------------------------------


def test_to_wire_is_milliseconds_and_z() -> None:
    assert to_wire(T0) == "2025-06-30T23:59:58.987Z"
    assert WIRE.fullmatch(to_wire(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) or "")
    assert to_wire(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05.000Z"


def test_to_wire_converts_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    assert to_wire(datetime(2025, 1, 1, 1, 0, 0, 5000, tzinfo=plus_two)) == "2024-12-31T23:00:00.005Z"


def test_to_wire_of_none_is_none() -> None:
    assert to_wire(None) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-06-30T23:59:58.987Z", datetime(2025, 6, 30, 23, 59, 58, 987000, tzinfo=UTC)),
        ("2025-06-30T23:59:58Z", datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)),
        ("2025-06-30t23:59:58z", datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)),
        ("2025-06-30T23:59:58.987+00:00", datetime(2025, 6, 30, 23, 59, 58, 987000, tzinfo=UTC)),
        ("2025-07-01T01:59:58.987+02:00", datetime(2025, 6, 30, 23, 59, 58, 987000, tzinfo=UTC)),
        ("2025-06-30T18:29:58-05:30", datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)),
        (" 2025-06-30T23:59:58Z ", datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)),
        ("2025-06-30T23:59:58", datetime(2025, 6, 30, 23, 59, 58, tzinfo=UTC)),  # naive: UTC
    ],
)
def test_parse_wire_accepts_z_and_offsets(text: str, expected: datetime) -> None:
    parsed = parse_wire(text)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_wire_round_trip_at_millisecond_precision() -> None:
    assert parse_wire(to_wire(T0) or "") == T0.replace(microsecond=987000)


@pytest.mark.parametrize("text", ["", "yesterday", "2025-13-01T00:00:00Z"])
def test_parse_wire_refuses_non_times(text: str) -> None:
    with pytest.raises(ValueError):
        parse_wire(text)


# --- parse_bool --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "True", "yes", "on", " true "])
def test_parse_bool_true(value: str) -> None:
    assert parse_bool("X", value) is True


@pytest.mark.parametrize("value", ["", "0", "false", "FALSE", "no", "off", " false "])
def test_parse_bool_false(value: str) -> None:
    assert parse_bool("X", value) is False


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "enabled", "y"])
def test_parse_bool_refuses_anything_else(value: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_bool("BLOCKVAULT_X", value)
    assert info.value.context["field"] == "BLOCKVAULT_X"
    assert value in info.value.text


# --- Settings.from_env -------------------------------------------------------------------------------------------


def test_from_env_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env({"HOME": str(tmp_path)})
    assert settings.data_dir == (tmp_path / ".local" / "share" / "blockvault").resolve()
    assert settings.host == "127.0.0.1"
    assert settings.port == DEFAULT_PORT == 8080
    assert settings.public_host is None
    assert settings.allow_clock_control is False
    assert settings.root_key_b64 is None
    assert settings.regions == DEFAULT_REGIONS
    assert settings.base_url == "http://127.0.0.1:8080"
    assert settings.keystore_dir == settings.data_dir / "keystore"


def test_from_env_uses_xdg_data_home(tmp_path: Path) -> None:
    settings = Settings.from_env({"XDG_DATA_HOME": str(tmp_path / "xdg"), "HOME": str(tmp_path / "home")})
    assert settings.data_dir == (tmp_path / "xdg" / "blockvault").resolve()


def test_from_env_reads_data_dir_and_port(tmp_path: Path) -> None:
    settings = Settings.from_env({"BLOCKVAULT_DATA_DIR": str(tmp_path / "data"), "BLOCKVAULT_PORT": "9123"})
    assert settings.data_dir == (tmp_path / "data").resolve()
    assert settings.port == 9123
    assert settings.base_url == "http://127.0.0.1:9123"
    assert settings.region_url("us-ashburn-1") == "http://127.0.0.1:9123/us-ashburn-1"


def test_from_env_reads_host_public_host_and_root_key(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "BLOCKVAULT_DATA_DIR": str(tmp_path),
            "BLOCKVAULT_HOST": "192.0.2.10",
            "BLOCKVAULT_PUBLIC_HOST": "vault.example",
            "BLOCKVAULT_ROOT_KEY": "cm9vdA==",
        }
    )
    assert settings.host == "192.0.2.10"
    assert settings.base_url == "http://vault.example:8080"
    assert settings.root_key_b64 == "cm9vdA=="
    assert "cm9vdA==" not in repr(settings)


def test_from_env_overrides_win_over_the_environment(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"BLOCKVAULT_DATA_DIR": str(tmp_path / "env"), "BLOCKVAULT_PORT": "1"},
        data_dir=tmp_path / "override",
        port=2,
        allow_clock_control=True,
    )
    assert settings.data_dir == (tmp_path / "override").resolve()
    assert settings.port == 2
    assert settings.allow_clock_control is True


def test_from_env_bad_port_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument) as info:
        Settings.from_env({"BLOCKVAULT_DATA_DIR": str(tmp_path), "BLOCKVAULT_PORT": "eighty"})
    assert info.value.context["field"] == "port"


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("0", False), ("", False), ("true", True)])
def test_from_env_clock_control_is_parsed_strictly(tmp_path: Path, value: str, expected: bool) -> None:
    env = {"BLOCKVAULT_DATA_DIR": str(tmp_path), "BLOCKVAULT_ALLOW_CLOCK_CONTROL": value}
    assert Settings.from_env(env).allow_clock_control is expected


def test_from_env_clock_control_maybe_is_refused(tmp_path: Path) -> None:
    env = {"BLOCKVAULT_DATA_DIR": str(tmp_path), "BLOCKVAULT_ALLOW_CLOCK_CONTROL": "maybe"}
    with pytest.raises(InvalidArgument) as info:
        Settings.from_env(env)
    assert info.value.context["field"] == "BLOCKVAULT_ALLOW_CLOCK_CONTROL"


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = Settings.from_env({"BLOCKVAULT_DATA_DIR": str(tmp_path)})
    with pytest.raises(AttributeError):
        settings.port = 1  # type: ignore[misc]


# --- regions and availability domains (R8.6) ----------------------------------------------------------------------


AD_NAME = re.compile(r"[A-Za-z0-9]+:[A-Z0-9]+(-[A-Z0-9]+)*-AD-[1-9]\d*")


def test_ashburn_ad_names_have_the_r86_form() -> None:
    assert RegionSettings("us-ashburn-1", "iad").availability_domains == (
        "bvlt:US-ASHBURN-AD-1",
        "bvlt:US-ASHBURN-AD-2",
        "bvlt:US-ASHBURN-AD-3",
    )


@pytest.mark.parametrize("region", DEFAULT_REGIONS, ids=lambda r: r.name)
def test_default_region_ad_names_look_like_oci(region: RegionSettings) -> None:
    ads = region.availability_domains
    assert len(ads) == region.ad_count == 3
    for n, ad in enumerate(ads, start=1):
        assert AD_NAME.fullmatch(ad), ad
        assert ad.endswith(f"-AD-{n}")
        assert "-1-AD-" not in ad  # the region's trailing number is not part of the AD name


def test_ad_count_is_respected() -> None:
    assert RegionSettings("eu-frankfurt-1", "fra", ad_count=1).availability_domains == ("bvlt:EU-FRANKFURT-AD-1",)


def test_default_regions_are_ashburn_and_phoenix() -> None:
    assert [(r.name, r.key) for r in DEFAULT_REGIONS] == [("us-ashburn-1", "iad"), ("us-phoenix-1", "phx")]
