"""Settings: flags over SAM_* environment over built-in defaults, validated once."""

from __future__ import annotations

import dataclasses

import pytest

from server.settings import Settings, SettingsError, parse_bool, parse_bytes


def test_defaults_without_flags_or_environment() -> None:
    settings = Settings.from_args([], environ={})
    assert settings == Settings()
    assert (settings.host, settings.port, settings.triton_url) == ("127.0.0.1", 50051, "127.0.0.1:8001")
    assert settings.cache_capacity_bytes == 1 << 30 and settings.cache_float16 is False
    assert settings.listen_address == "127.0.0.1:50051"


def test_environment_sets_defaults_and_flags_win() -> None:
    environ = {
        "SAM_PORT": "6000",
        "SAM_CACHE_CAPACITY_BYTES": "512MiB",
        "SAM_CACHE_FLOAT16": "yes",
        "SAM_TRITON_URL": "triton:8001",
        "SAM_GRACE_PERIOD_S": "2.5",
    }

    from_env = Settings.from_args([], environ=environ)
    overridden = Settings.from_args(["--port", "7000", "--no-cache-float16", "--cache-capacity-bytes", "1GB"], environ)

    assert (from_env.port, from_env.cache_capacity_bytes, from_env.cache_float16) == (6000, 512 << 20, True)
    assert (from_env.triton_url, from_env.grace_period_s) == ("triton:8001", 2.5)
    assert (overridden.port, overridden.cache_float16, overridden.cache_capacity_bytes) == (7000, False, 10**9)
    assert overridden.triton_url == "triton:8001"


def test_reads_os_environ_when_no_mapping_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAM_MASK_CACHE_ENTRIES", "17")
    assert Settings.from_args([]).mask_cache_entries == 17


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("1073741824", 1 << 30), ("1GiB", 1 << 30), ("512 MiB", 512 << 20), ("64MB", 64 * 10**6),
     ("3kib", 3072), ("10B", 10)],
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize("text", ["", "1.5GiB", "-1", "12 parsecs", "GiB"])
def test_parse_bytes_rejects_what_is_not_a_size(text: str) -> None:
    with pytest.raises(ValueError, match="is not a byte size"):
        parse_bytes(text)


@pytest.mark.parametrize(("text", "value"), [("1", True), ("TRUE", True), ("on", True), ("0", False), ("No", False)])
def test_parse_bool(text: str, value: bool) -> None:
    assert parse_bool(text) is value


@pytest.mark.parametrize(
    ("argv", "environ", "needle"),
    [
        (["--port", "x"], {}, "'x' is not an integer (from --port or SAM_PORT)"),
        ([], {"SAM_PORT": "x"}, "environment variable SAM_PORT: 'x' is not an integer"),
        ([], {"SAM_CACHE_FLOAT16": "maybe"}, "SAM_CACHE_FLOAT16: 'maybe' is not a boolean"),
        (["--cache-capacity-bytes", "lots"], {}, "'lots' is not a byte size"),
        (["--port", "70000"], {}, "--port must be a TCP port 0..65535, got 70000"),
        (["--port", "9000", "--metrics-port", "9000"], {}, "--port and --metrics-port must differ"),
        (["--triton-url", "http://triton"], {}, "--triton-url must be HOST:PORT"),
        (["--max-image-bytes", "1GiB"], {}, "--max-message-bytes (67108864) must exceed --max-image-bytes"),
        (["--grace-period-s", "0"], {}, "--grace-period-s must be positive seconds"),
        (["--cache-capacity-bytes", "-5"], {}, "is not a byte size"),
        (["--mask-cache-entries", "-1"], {}, "--mask-cache-entries must be >= 0"),
        (["--max-prompt-sets", "0"], {}, "--max-prompt-sets must be positive"),
        (["--encoder-model", ""], {}, "--encoder-model must not be empty"),
        (["--log-level", "chatty"], {}, "--log-level must be DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_values_exit_with_a_message_naming_the_setting(
    argv: list[str], environ: dict[str, str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as excinfo:
        Settings.from_args(argv, environ)
    assert excinfo.value.code == 2
    assert needle in capsys.readouterr().err


def test_direct_construction_validates_too() -> None:
    with pytest.raises(SettingsError, match="--max-image-pixels must be positive"):
        Settings(max_image_pixels=0)


def test_help_lists_every_setting_with_its_flag_variable_and_default(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as excinfo:
        Settings.from_args(["--help"], environ={"SAM_PORT": "6123"})
    assert excinfo.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # undo argparse's line wrapping
    for spec in dataclasses.fields(Settings):
        assert "--" + spec.name.replace("_", "-") in text
        assert "SAM_" + spec.name.upper() in text
    assert "[SAM_PORT] (default: 6123)" in text  # the default shown is the one in effect
