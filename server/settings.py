"""The gateway's configuration: one frozen, typed object built once at start.

Every setting is a command-line flag whose default comes from an environment variable named
``SAM_`` + the field name in upper case (``--cache-capacity-bytes`` <- ``SAM_CACHE_CAPACITY_BYTES``),
then from the built-in default. Flags win over the environment. :meth:`Settings.from_args` is the
only place that reads the environment; request handling only ever sees the built object.

Byte sizes accept plain integers or binary/decimal suffixes: ``1073741824``, ``1GiB``, ``512MiB``,
``64MB``. Booleans in the environment accept ``1/0``, ``true/false``, ``yes/no``, ``on/off``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ENV_PREFIX = "SAM_"

_SIZE_UNITS = {
    "": 1, "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}  # fmt: skip
_SIZE_PATTERN = re.compile(r"^\s*(\d+)\s*([A-Za-z]*)\s*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class SettingsError(ValueError):
    """A setting has a value the gateway cannot run with; the message names the flag and variable."""


def parse_bytes(text: str) -> int:
    """``"512MiB"`` -> 536870912. Integers with an optional unit (B, KB/MB/GB/TB, KiB/MiB/GiB/TiB)."""
    match = _SIZE_PATTERN.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _SIZE_UNITS:
        raise ValueError(f"{text!r} is not a byte size; write e.g. 1073741824, 1GiB or 512MiB")
    return int(match.group(1)) * _SIZE_UNITS[unit]


def parse_int(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an integer") from None


def parse_float(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean; write true or false (also 1/0, yes/no, on/off)")


def _setting(default: Any, help: str, *, parse: Callable[[str], Any] | None = None, metavar: str | None = None) -> Any:
    return field(default=default, metadata={"help": help, "parse": parse, "metavar": metavar})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """All gateway settings (see the module docstring for how flags and environment combine)."""

    host: str = _setting(
        "127.0.0.1",
        "Address the gRPC server listens on; 0.0.0.0 (or [::]) to accept connections from other hosts.",
        metavar="ADDRESS",
    )
    port: int = _setting(50051, "gRPC port; 0 lets the OS choose a free port (tests).", metavar="PORT")
    metrics_port: int = _setting(
        9090,
        "Port of the Prometheus /metrics HTTP endpoint on the same address; 0 lets the OS choose.",
        metavar="PORT",
    )
    triton_url: str = _setting(
        "127.0.0.1:8001", "Triton Inference Server gRPC endpoint, as HOST:PORT.", metavar="HOST:PORT"
    )
    encoder_model: str = _setting("sam_encoder", "Triton model name of the image encoder.", metavar="NAME")
    decoder_model: str = _setting("sam_decoder", "Triton model name of the prompt/mask decoder.", metavar="NAME")
    model_version: str = _setting(
        "", "Triton model version to call for both models; empty means Triton's latest.", metavar="VERSION"
    )
    triton_timeout_s: float = _setting(
        30.0, "Seconds one Triton inference may take before the call fails with DEADLINE_EXCEEDED.", metavar="S"
    )
    use_shared_memory: bool = _setting(
        False,
        "Exchange embeddings and decoder outputs with Triton through system shared memory (only when "
        "the gateway and Triton share a host and /dev/shm).",
    )
    cache_capacity_bytes: int = _setting(
        1 << 30,
        "Upper bound on the bytes of cached image embeddings (a float32 vit_b embedding is 4 MiB); "
        "0 disables the cache.",
        parse=parse_bytes,
        metavar="BYTES",
    )
    cache_float16: bool = _setting(
        False, "Store cached embeddings as float16: half the memory, masks may differ slightly."
    )
    mask_cache_entries: int = _setting(
        256,
        "How many recently returned masks keep their low-res logits for refinement by mask id "
        "(256 KiB each for 256x256 logits); 0 disables mask ids as prompts.",
        metavar="N",
    )
    max_image_pixels: int = _setting(
        40_000_000, "Largest accepted image in pixels (width x height); larger is INVALID_ARGUMENT.", metavar="PX"
    )
    max_image_bytes: int = _setting(
        32 << 20, "Largest accepted image payload (encoded or raw) in bytes.", parse=parse_bytes, metavar="BYTES"
    )
    max_message_bytes: int = _setting(
        64 << 20,
        "gRPC max send and receive message size in bytes, for clients and Triton alike; must exceed "
        "--max-image-bytes (gRPC's own 4 MiB default is too small for an embedding).",
        parse=parse_bytes,
        metavar="BYTES",
    )
    max_prompt_sets: int = _setting(64, "Most prompt sets one Segment call may carry.", metavar="N")
    max_points_per_set: int = _setting(64, "Most points one prompt set may carry.", metavar="N")
    max_generate_points_per_side: int = _setting(
        64,
        "Largest GenerateMasks points_per_side (a points_per_side^2 grid of decoder prompts per crop); "
        "larger is INVALID_ARGUMENT.",
        metavar="N",
    )
    max_generate_crop_layers: int = _setting(
        2,
        "Largest GenerateMasks crop_n_layers (layer i adds 4^i crops, each one more encoder run); "
        "larger is INVALID_ARGUMENT.",
        metavar="N",
    )
    redis_url: str = _setting(
        "",
        "Redis URL of the optional embedding cache shared by all gateway replicas "
        "(redis://HOST:PORT/DB); empty turns it off.",
        metavar="URL",
    )
    health_poll_interval_s: float = _setting(
        1.0,
        "Seconds between checks of Triton's readiness; the health service follows it (NOT_SERVING "
        "while Triton or its models are down).",
        metavar="S",
    )
    grace_period_s: float = _setting(
        10.0,
        "Seconds in-flight calls may finish after SIGTERM; keep it below Kubernetes' "
        "terminationGracePeriodSeconds.",
        metavar="S",
    )
    log_level: str = _setting("INFO", "Python logging level: DEBUG, INFO, WARNING or ERROR.", metavar="LEVEL")

    def __post_init__(self) -> None:
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not 0 <= value <= 65535:
                raise SettingsError(f"{_flag(name)} must be a TCP port 0..65535, got {value}")
        if self.port != 0 and self.port == self.metrics_port:
            raise SettingsError(f"--port and --metrics-port must differ, both are {self.port}")
        if not re.fullmatch(r"\S+:\d{1,5}", self.triton_url):
            raise SettingsError(f"--triton-url must be HOST:PORT, got {self.triton_url!r}")
        for name in ("encoder_model", "decoder_model"):
            if not getattr(self, name):
                raise SettingsError(f"{_flag(name)} must not be empty")
        for name in ("triton_timeout_s", "grace_period_s", "health_poll_interval_s"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_flag(name)} must be positive seconds, got {getattr(self, name)}")
        for name in ("cache_capacity_bytes", "mask_cache_entries", "max_generate_crop_layers"):
            if getattr(self, name) < 0:
                raise SettingsError(f"{_flag(name)} must be >= 0, got {getattr(self, name)}")
        for name in (
            "max_image_pixels",
            "max_image_bytes",
            "max_prompt_sets",
            "max_points_per_set",
            "max_generate_points_per_side",
        ):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{_flag(name)} must be positive, got {getattr(self, name)}")
        if self.max_message_bytes <= self.max_image_bytes:
            raise SettingsError(
                f"--max-message-bytes ({self.max_message_bytes}) must exceed --max-image-bytes "
                f"({self.max_image_bytes}), or the largest accepted image cannot arrive"
            )
        if self.redis_url and not re.match(r"^(redis|rediss|unix)://", self.redis_url):
            raise SettingsError(f"--redis-url must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise SettingsError(f"--log-level must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")

    @property
    def listen_address(self) -> str:
        """``host:port`` for ``grpc.aio.Server.add_insecure_port`` (IPv6 hosts need brackets)."""
        return f"{self.host}:{self.port}"

    @classmethod
    def parser(cls, environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
        """The argument parser, with defaults taken from ``environ`` (default: ``os.environ``)."""
        environ = os.environ if environ is None else environ
        parser = argparse.ArgumentParser(
            prog="python -m server",
            description=(
                "Segment Anything gRPC gateway in front of Triton. Every flag can also be set with "
                f"the environment variable shown next to it ({ENV_PREFIX} + the flag name in upper "
                "case with underscores); flags win."
            ),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        for spec in dataclasses.fields(cls):
            env_name = ENV_PREFIX + spec.name.upper()
            flag = _flag(spec.name)
            default = spec.default
            parse = _parser_for(spec)
            if env_name in environ:
                try:
                    default = parse(environ[env_name])
                except ValueError as error:
                    raise SettingsError(f"environment variable {env_name}: {error}") from error
            help_text = f"{spec.metadata['help']} [{env_name}]"
            if isinstance(spec.default, bool):
                parser.add_argument(
                    flag, action=argparse.BooleanOptionalAction, default=default, dest=spec.name, help=help_text
                )
            else:
                parser.add_argument(
                    flag,
                    type=_named(parse, flag, env_name),
                    default=default,
                    dest=spec.name,
                    metavar=spec.metadata["metavar"],
                    help=help_text,
                )
        return parser

    @classmethod
    def from_args(cls, argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
        """Build the settings from ``argv`` (default ``sys.argv[1:]``) and ``environ``.

        Exits with status 2 and a usage message (argparse's way) on a bad flag or variable.
        """
        try:
            parser = cls.parser(environ)
        except SettingsError as error:
            argparse.ArgumentParser(prog="python -m server").error(str(error))
        namespace = parser.parse_args(argv)
        try:
            return cls(**vars(namespace))
        except SettingsError as error:
            parser.error(str(error))


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parser_for(spec: dataclasses.Field[Any]) -> Callable[[str], Any]:
    if spec.metadata.get("parse") is not None:
        parse: Callable[[str], Any] = spec.metadata["parse"]
        return parse
    parsers: dict[type, Callable[[str], Any]] = {bool: parse_bool, int: parse_int, float: parse_float}
    return parsers.get(type(spec.default), str)


def _named(parse: Callable[[str], Any], flag: str, env_name: str) -> Callable[[str], Any]:
    """Wrap ``parse`` so argparse reports which flag/variable had the bad value."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{error} (from {flag} or {env_name})") from error

    convert.__name__ = flag
    return convert
