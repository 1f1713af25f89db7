"""The signature verification snippets of docs/integrator/callbacks.md, run in their own
languages against the one published test vector (docs/integrator/verify/vector.json).

Each snippet is a program ``SECRET HEADER NOW < body`` that exits 0 when the signature is
valid. Python and Node.js are on every machine the project runs on; PHP, Java, Go and C#
come from Debian (scripts/bootstrap installs them): where one is missing the test skips on
a developer machine and fails in CI (tests/support/ci.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.ci import unavailable

VERIFY = Path(__file__).resolve().parents[2] / "docs" / "integrator" / "verify"
VECTOR = json.loads((VERIFY / "vector.json").read_text(encoding="utf-8"))
T = int(VECTOR["timestamp"])
BODY = VECTOR["body"].encode()

Build = Callable[[Path], list[str]]  # work dir -> the command that runs the snippet


def _needs(*tools: str) -> None:
    for tool in tools:
        if shutil.which(tool) is None:
            unavailable(tool, "not installed (scripts/bootstrap installs it)")


def _python(_: Path) -> list[str]:
    return [sys.executable, str(VERIFY / "verify.py")]


def _node(_: Path) -> list[str]:
    _needs("node")
    return ["node", str(VERIFY / "verify.js")]


def _php(_: Path) -> list[str]:
    _needs("php")
    return ["php", str(VERIFY / "verify.php")]


def _java(work: Path) -> list[str]:
    _needs("javac", "java")
    subprocess.run(["javac", "-d", str(work), str(VERIFY / "Verify.java")], check=True)
    return ["java", "-cp", str(work), "Verify"]


def _go(work: Path) -> list[str]:
    _needs("go")
    env = {"GOCACHE": str(work / "gocache"), "GOPATH": str(work / "gopath"), "HOME": str(work)}
    out = work / "verify-go"
    subprocess.run(
        ["go", "build", "-o", str(out), str(VERIFY / "verify.go")],
        check=True,
        env={**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    return [str(out)]


def _csharp(work: Path) -> list[str]:
    _needs("mcs", "mono")
    exe = work / "Verify.exe"
    subprocess.run(["mcs", f"-out:{exe}", str(VERIFY / "Verify.cs")], check=True)
    return ["mono", str(exe)]


LANGUAGES: dict[str, Build] = {
    "python": _python,
    "node": _node,
    "php": _php,
    "java": _java,
    "go": _go,
    "csharp": _csharp,
}


@pytest.fixture(scope="module", params=list(LANGUAGES))
def snippet(request: pytest.FixtureRequest) -> Iterator[list[str]]:
    with tempfile.TemporaryDirectory(prefix="ctc-verify-") as work:
        yield LANGUAGES[request.param](Path(work))


def _run(command: list[str], secret: str, header: str, now: int, body: bytes) -> bool:
    done = subprocess.run(
        [*command, secret, header, str(now)], input=body, capture_output=True, timeout=60
    )
    verdict = done.stdout.decode().strip()
    assert (done.returncode, verdict) in ((0, "valid"), (1, "invalid")), done
    return done.returncode == 0


def test_the_published_vector_verifies(snippet: list[str]) -> None:
    assert _run(snippet, VECTOR["secret"], VECTOR["header"], T, BODY)


def test_a_tampered_body_is_refused(snippet: list[str]) -> None:
    tampered = BODY.replace(b'"seq":5', b'"seq":6')
    assert tampered != BODY
    assert not _run(snippet, VECTOR["secret"], VECTOR["header"], T, tampered)


def test_another_secret_is_refused(snippet: list[str]) -> None:
    assert not _run(snippet, "not-the-secret", VECTOR["header"], T, BODY)


def test_a_stale_or_future_timestamp_is_refused(snippet: list[str]) -> None:
    assert _run(snippet, VECTOR["secret"], VECTOR["header"], T + 300, BODY)
    assert not _run(snippet, VECTOR["secret"], VECTOR["header"], T + 301, BODY)
    assert not _run(snippet, VECTOR["secret"], VECTOR["header"], T - 301, BODY)


def test_during_a_rotation_either_secret_verifies(snippet: list[str]) -> None:
    header = VECTOR["rotation_header"]
    assert _run(snippet, VECTOR["secret"], header, T, BODY)
    assert _run(snippet, VECTOR["previous_secret"], header, T, BODY)
    assert not _run(snippet, "not-the-secret", header, T, BODY)


def test_a_header_without_signature_or_timestamp_is_refused(snippet: list[str]) -> None:
    v1 = VECTOR["header"].partition(",")[2]
    assert not _run(snippet, VECTOR["secret"], f"t={T}", T, BODY)
    assert not _run(snippet, VECTOR["secret"], v1, T, BODY)
