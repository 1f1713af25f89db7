"""The wheel is the product an admin installs: it must work without the checkout.

`pip wheel .` is installed into a fresh virtualenv outside the repository; that install's
`ctc` migrates an empty database with the migrations the wheel carries (the repository's
top-level sql/ travels as data) and lists every command; the dev tools find the Asterisk
configuration (top-level dialplan/, data too) and their SIPp scenarios (package data) in
that install, and in an install whose data root is not ``sys.prefix`` (as with
``pip install --user`` or Debian's pip, which installs under /usr/local); the web
console's pages are in the wheel, and the installed engine serves every one of them.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import zipfile
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parents[2]
_NOT_SOURCE = (
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
)
COMMANDS = (
    "billing",
    "call",
    "callbacks",
    "calls",
    "caller-id",
    "compliance",
    "config",
    "db",
    "demo",
    "doctor",
    "ivr",
    "nodes",
    "routing",
    "provider",
    "run",
    "sandbox",
    "secrets",
    "stats",
    "tenant",
    "token",
    "transcripts",
)


async def _run(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 600)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{' '.join(argv)} exited {proc.returncode}:\n{text[-3000:]}"
    return text


async def test_the_wheel_migrates_an_empty_database_and_lists_every_command_without_the_checkout(
    tmp_path: Path, empty_db: str
) -> None:
    wheels, venv, source = tmp_path / "wheels", tmp_path / "venv", tmp_path / "source"
    # built from a copy without build output: setuptools reuses a checkout's build/lib, which
    # would ship modules deleted since (a wheel must hold what the tree holds, no more)
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    built = await _run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "-w",
        str(wheels),
        str(source),
        cwd=tmp_path,
    )
    assert "License classifiers are deprecated" not in built
    assert "project.license` as a TOML table is deprecated" not in built
    (wheel,) = wheels.glob("ctc_engine-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        shipped = {n for n in names if n.startswith("engine/") and n.endswith(".py")}
        # the web console's pages, byte for byte: the daemon serves them from the install
        pages = ROOT / "engine/api/console_pages"
        console = {n for n in names if n.startswith("engine/api/console_pages/")}
        in_tree_pages = {p.relative_to(ROOT).as_posix() for p in pages.rglob("*") if p.is_file()}
        assert console == in_tree_pages
        assert {"index.html", "console.css", "js/main.js"} <= {
            Path(n).relative_to("engine/api/console_pages").as_posix() for n in console
        }
        for name in console:
            assert archive.read(name) == (ROOT / name).read_bytes(), name
    in_tree = {p.relative_to(ROOT).as_posix() for p in (ROOT / "engine").rglob("*.py")}
    assert shipped == in_tree
    await _run(sys.executable, "-m", "venv", str(venv), cwd=tmp_path)
    await _run(str(venv / "bin/pip"), "install", "-q", str(wheel), cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CTC_", "PYTHON", "VIRTUAL"))}
    env["CTC_DATABASE_URL"] = empty_db
    # run from an empty folder: nothing of the checkout is importable or readable
    out = await _run(str(venv / "bin/ctc"), "db", "migrate", cwd=tmp_path, env=env)
    migrations = sorted(p.name for p in (ROOT / "sql").glob("*.sql"))
    for name in migrations:
        assert f"applied {name}" in out, out
    conn = await asyncpg.connect(empty_db)
    try:
        applied = await conn.fetchval("SELECT count(*) FROM schema_migration")
    finally:
        await conn.close()
    assert applied == len(migrations)
    listed = await _run(str(venv / "bin/ctc"), "--help", cwd=tmp_path, env=env)
    commands = {line.split()[0] for line in listed.split("Commands:")[1].splitlines() if line}
    assert commands == set(COMMANDS)

    # the console, served from the install (not the checkout)
    served = await _run(
        str(venv / "bin/python"),
        "-c",
        "from engine.api.console import PAGES\nprint(' '.join(sorted(PAGES)))",
        cwd=tmp_path,
        env=env,
    )
    assert served.split() == sorted(
        p.relative_to(pages).as_posix() for p in pages.rglob("*") if p.is_file()
    )

    # the dev tools' data, found where the install put it (not in the checkout)
    found = await _run(
        str(venv / "bin/python"),
        "-c",
        "from engine.devtools.sandbox import DIALPLAN_DIR\n"
        "from engine.devtools.sipp import SCENARIOS\n"
        "print(DIALPLAN_DIR)\n"
        "print(SCENARIOS)",
        cwd=tmp_path,
        env=env,
    )
    dialplan_dir, scenarios_dir = (Path(line) for line in found.split())
    for installed, shipped in (
        (dialplan_dir, ROOT / "dialplan"),
        (scenarios_dir, ROOT / "engine/devtools/scenarios"),
    ):
        assert installed.is_relative_to(venv), (installed, venv)
        expected = sorted(p.name for p in shipped.iterdir() if p.suffix in {".conf", ".xml"})
        assert expected, shipped
        got = sorted(p.name for p in installed.iterdir() if p.suffix in {".conf", ".xml"})
        assert got == expected, installed
        for name in expected:
            assert (installed / name).read_bytes() == (shipped / name).read_bytes(), name

    # an install outside sys.prefix: the same wheel under another prefix, imported from
    # there by the venv's python (sys.prefix stays the venv), as --user or Debian's pip do
    elsewhere = tmp_path / "elsewhere"
    await _run(
        str(venv / "bin/pip"),
        "install",
        "-q",
        "--no-deps",
        "--ignore-installed",
        "--prefix",
        str(elsewhere),
        str(wheel),
        cwd=tmp_path,
    )
    (site_packages,) = elsewhere.glob("lib/python*/site-packages")
    found = await _run(
        str(venv / "bin/python"),
        "-c",
        "import sys\n"
        "import engine\n"
        "from engine.shared_data import shared_data_dir\n"
        "print(sys.prefix)\n"
        "print(engine.__file__)\n"
        "print(shared_data_dir('sql'))\n"
        "print(shared_data_dir('dialplan'))",
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(site_packages)},
    )
    prefix, package, sql_dir, dialplan_dir = (Path(line) for line in found.split())
    assert prefix == venv, prefix
    assert Path(package).is_relative_to(site_packages), package
    for installed, shipped in ((sql_dir, ROOT / "sql"), (dialplan_dir, ROOT / "dialplan")):
        assert installed == elsewhere / "share/ctc-engine" / shipped.name, installed
        expected = sorted(p.name for p in shipped.iterdir() if p.suffix in {".sql", ".conf"})
        assert sorted(p.name for p in installed.iterdir() if p.suffix in {".sql", ".conf"}) == (
            expected
        )
    # what docs/admin/install.md copies into /etc from a wheel install
    config = elsewhere / "share/ctc-engine/config"
    assert sorted(p.name for p in config.iterdir()) == ["ctc-engine.service", "engine.example.yaml"]
