"""Issue 21, items 8, 9 and 3: image sizes read from WebP, JPEG and GIF headers; the data
directory (never the working directory); every transformer problem in one check-config run."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RouterProcess, StartRouter, run_cli

# --- item 8: image sizes -----------------------------------------------------------------------
# Anthropic: tokens = width * height / 750
# (https://docs.anthropic.com/en/docs/build-with-claude/vision#calculate-image-costs).
TOKENS_200_BY_200 = 200 * 200 // 750  # 53


def _riff_webp(*chunks: tuple[bytes, bytes]) -> bytes:
    """A WebP file: "RIFF", its size, "WEBP", then chunks of FourCC, size and payload padded
    to an even length (https://developers.google.com/speed/webp/docs/riff_container)."""
    body = b"".join(
        kind + struct.pack("<I", len(data)) + data + b"\x00" * (len(data) % 2)
        for kind, data in chunks
    )
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def _vp8(width: int, height: int) -> bytes:
    """A VP8 key frame's header (RFC 6386, 9.1 and 19.1): a 3-byte frame tag (key frame bit 0,
    version 0, shown, first partition size), the start code, 14-bit width and height."""
    partition = b"\x00" * 10
    tag = (1 << 4) | (len(partition) << 5)
    return (
        tag.to_bytes(3, "little") + b"\x9d\x01\x2a" + struct.pack("<HH", width, height) + partition
    )


def _vp8l(width: int, height: int) -> bytes:
    """A lossless header: signature 0x2f, width - 1 and height - 1 in 14 bits each, the alpha
    bit and a 3-bit version 0 (https://developers.google.com/speed/webp/docs/webp_lossless_bitstream_specification)."""
    bits = (width - 1) | (height - 1) << 14
    return b"\x2f" + struct.pack("<I", bits) + b"\x00" * 8


def _vp8x(width: int, height: int) -> bytes:
    """An extended header: flags and 3 reserved bytes, canvas width - 1 and height - 1 in 24
    bits each."""
    return b"\x00" * 4 + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")


WEBP_200 = {
    "lossy": _riff_webp((b"VP8 ", _vp8(200, 200))),
    "lossless": _riff_webp((b"VP8L", _vp8l(200, 200))),
    "extended": _riff_webp((b"VP8X", _vp8x(200, 200)), (b"VP8 ", _vp8(200, 200))),
}


def _jpeg(width: int, height: int) -> bytes:
    """SOI, an APP0 (JFIF) segment to skip, then a baseline start of frame: length, precision,
    height, width, components (ITU T.81, B.2.2)."""
    app0 = b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 2 + len(app0))
        + app0
        + b"\xff\xc0"
        + struct.pack(">H", 2 + len(sof))
        + sof
        + b"\xff\xd9"
    )


def _gif(width: int, height: int) -> bytes:
    """Header and logical screen descriptor: little-endian width and height (GIF89a, 18)."""
    return b"GIF89a" + struct.pack("<HHBBB", width, height, 0, 0, 0) + b"\x3b"


async def _count(router_url: str, media_type: str, data: str) -> httpx.Response:
    source = {"type": "base64", "media_type": media_type, "data": data}
    body = {"messages": [{"role": "user", "content": [{"type": "image", "source": source}]}]}
    async with httpx.AsyncClient(base_url=router_url, timeout=30) as client:
        return await client.post("/v1/messages/count_tokens", json=body)


@pytest.mark.parametrize("kind", sorted(WEBP_200))
async def test_webp_counts_its_size(start_router: StartRouter, kind: str) -> None:
    router = await start_router({})
    data = base64.b64encode(WEBP_200[kind]).decode()
    response = await _count(router.url, "image/webp", data)
    assert response.status_code == 200, response.text
    assert response.json() == {"input_tokens": TOKENS_200_BY_200}


@pytest.mark.parametrize(
    ("media_type", "image", "expected"),
    [
        ("image/jpeg", _jpeg(300, 150), 60),  # 300 * 150 / 750
        ("image/gif", _gif(150, 100), 20),
    ],
)
async def test_jpeg_and_gif_count_their_size(
    start_router: StartRouter, media_type: str, image: bytes, expected: int
) -> None:
    router = await start_router({})
    response = await _count(router.url, media_type, base64.b64encode(image).decode())
    assert response.json() == {"input_tokens": expected}


@pytest.mark.parametrize(
    "data",
    [
        "a===",  # not base64: one character too many
        "not base64 at all!",
        base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8 ").decode(),  # WebP cut off
        base64.b64encode(b"RIFF\x00\x00\x00\x00WEBPVP8L\x05\x00\x00\x00\x00").decode(),
    ],
)
async def test_an_unreadable_image_counts_the_maximum(start_router: StartRouter, data: str) -> None:
    router = await start_router({})
    response = await _count(router.url, "image/webp", data)
    assert response.status_code == 200, response.text
    assert response.json() == {"input_tokens": 1600}


# --- item 9: the data directory ----------------------------------------------------------------

StartRouterProcess = Callable[..., RouterProcess]


def _use(router: RouterProcess) -> None:
    """A request, so the router logs a line and has its usage store open."""
    with httpx.Client(base_url=router.url, timeout=30) as client:
        assert client.get("/api/usage").status_code == 200


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert path.exists(), f"{path} was never written"


def _start_line(router: RouterProcess) -> str:
    lines = [line for line in router.stderr_text().splitlines() if "listening on" in line]
    assert len(lines) == 1, lines
    return lines[0]


def test_without_a_config_data_goes_to_the_per_user_directory(
    router_process: StartRouterProcess, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    xdg = tmp_path / "xdg-data"
    router = router_process(env={"HOME": str(home), "XDG_DATA_HOME": str(xdg)})
    _use(router)
    data = xdg / "trio-router"
    _wait_for(data / "logs" / "trio-router.log")
    assert (data / "usage.sqlite3").is_file()
    assert f"logs and usage: {data}" in _start_line(router)
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "usage.sqlite3").exists()


def test_with_a_config_data_goes_beside_it(
    router_process: StartRouterProcess, tmp_path: Path
) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    (config_dir / "config.json").write_text("{}")
    router = router_process("--config", str(config_dir / "config.json"))
    _use(router)
    _wait_for(config_dir / "logs" / "trio-router.log")
    assert (config_dir / "usage.sqlite3").is_file()
    assert f"logs and usage: {config_dir}" in _start_line(router)
    assert not (tmp_path / "logs").exists()


def test_trio_router_data_dir_overrides_both(
    router_process: StartRouterProcess, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text("{}")
    chosen = tmp_path / "chosen" / "data"
    router = router_process(env={"TRIO_ROUTER_DATA_DIR": str(chosen)})
    _use(router)
    _wait_for(chosen / "logs" / "trio-router.log")
    assert (chosen / "usage.sqlite3").is_file()
    assert f"logs and usage: {chosen}" in _start_line(router)
    assert not (tmp_path / "logs").exists()
    assert not (tmp_path / "usage.sqlite3").exists()


# --- item 3: every transformer problem in one check-config run ---------------------------------


def test_check_config_lists_every_transformer_problem(tmp_path: Path) -> None:
    def provider(name: str, transformer: str) -> dict[str, Any]:
        return {
            "name": name,
            "api_base_url": "http://127.0.0.1:9/v1/chat/completions",
            "models": ["m"],
            "transformer": {"use": [transformer]},
        }

    config = {
        "transformers": [{"path": "no-such-transformer.py"}],
        "Providers": [provider("a", "nosuch-one"), provider("b", "nosuch-two")],
        "Router": {"default": "a,m"},
    }
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    result = run_cli("check-config", "--config", str(path), cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3, result.stderr
    assert "transformers[0].path:" in problems[0]
    assert "no-such-transformer.py: file not found" in problems[0]
    assert problems[1].startswith("  - Providers[0].transformer: unknown transformer 'nosuch-one'")
    assert problems[2].startswith("  - Providers[1].transformer: unknown transformer 'nosuch-two'")
    assert "Traceback" not in result.stderr
