"""trialbot as a newcomer gets it: installed from its wheel, started from an empty folder, with no
study.toml, .env or messages beside it; and `trialbot init`, which starts a site's own folder.

The wheel is built from this checkout (pip, as `pip install` would) and unpacked into a folder that
is put first on PYTHONPATH, so the demo runs on what the package carries and nothing of the
checkout: a file missing from the package data fails here, not at a site.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import aiohttp
import pytest

from bot.cli import init as init_command
from messages.catalog import MESSAGES_ROOT
from study.protocol import EXAMPLE_PROTOCOL, load_protocol

REPO = Path(__file__).resolve().parent.parent
DEV_ONLY = ("pytest", "playwright", "hypothesis", "pyinstrument", "mypy")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, unpacked: what `pip install trialbot` puts in site-packages."""
    # From a copy without build/ and *.egg-info: a build reuses what an earlier one left there, and
    # files the package data no longer names would slip into the wheel.
    source = tmp_path_factory.mktemp("source") / "trialbot"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "*.egg-info", "artifacts", "__pycache__", ".pytest_cache", ".ruff_cache", "*.db"))
    wheels = tmp_path_factory.mktemp("wheel")
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)],
                           check=False, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("trialbot-*.whl")
    site = tmp_path_factory.mktemp("site-packages")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def _environment(installed: Path, scratch: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if key not in ("STUDY_FILE", "TRIALBOT_MESSAGES_DIR", "DATABASE_URL", "TELEGRAM_BOT_TOKEN")}
    return {**env, "PYTHONPATH": str(installed), "PYTHONUNBUFFERED": "1", "TMPDIR": str(scratch)}


def test_the_installed_package_is_the_one_that_runs(installed: Path, tmp_path: Path) -> None:
    """The unpacked wheel, not the checkout, answers `import bot` (else the test proves nothing)."""
    found = subprocess.run([sys.executable, "-c", "import bot, messages, study; print(bot.__file__, messages.__file__)"],
                           cwd=tmp_path, env=_environment(installed, tmp_path), check=False,
                           capture_output=True, text=True)
    assert found.returncode == 0, found.stderr
    assert all(path.startswith(str(installed)) for path in found.stdout.split()), found.stdout


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
async def test_trialbot_demo_runs_from_an_empty_folder_and_cleans_up(installed: Path, tmp_path: Path,
                                                                    stop: signal.Signals) -> None:
    """From an empty folder, started as from a script's `&` (SIGINT ignored): it says it runs on the
    shipped example, serves a page where DEMO01 joins and logs an application, stops on the signal
    and leaves no scratch files behind."""
    folder, scratch = tmp_path / "empty", tmp_path / "tmp"
    folder.mkdir()
    scratch.mkdir()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "demo", "--port", "0", cwd=folder, env=_environment(installed, scratch),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    said: list[str] = []
    try:
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "trialbot demo ended before printing its address:\n" + "".join(said)
            said.append(line)
            if match := re.search(r"http://127\.0\.0\.1:\d+/", line):
                url = match.group(0)
        assert "example protocol that ships with trialbot" in "".join(said)
        assert any(scratch.iterdir()), "the demo's database lives in a scratch folder"
        await _join_and_log_an_application(url)
        process.send_signal(stop)
        rest = (await asyncio.wait_for(process.stdout.read(), 60)).decode()
        assert await process.wait() == 0, rest
        assert "demo stopped" in rest and "Traceback" not in rest, rest
        assert list(scratch.iterdir()) == [], "the demo left scratch files behind"
        assert list(folder.iterdir()) == [], "the demo wrote into the folder it was started from"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def _join_and_log_an_application(url: str) -> None:
    """What the page's script does when a person opens DEMO01's invite, agrees and asks /today."""
    async with aiohttp.ClientSession() as http:
        async with http.get(url) as page:
            assert page.status == 200 and "trialbot demo" in await page.text()
        async with http.post(url + "api/chats/DEMO01/open-link", json={}) as opened:
            assert opened.status == 200, await opened.text()
        agree = await _eventually(lambda: _button(http, url, "DEMO01", "yes, i agree"))
        async with http.post(url + "api/chats/DEMO01/press", json=agree) as pressed:
            assert pressed.status == 200, await pressed.text()
        await _eventually(lambda: _showing(http, url, "DEMO01", "You are all set"))
        before = len(await _messages(http, url, "DEMO01"))
        async with http.post(url + "api/chats/DEMO01/send", json={"text": "/today"}) as sent:
            assert sent.status == 200, await sent.text()

        async def answered() -> bool:
            return any(m["from_bot"] for m in (await _messages(http, url, "DEMO01"))[before:])

        await _eventually(answered)


async def _eventually(check, timeout: float = 30):
    """The first truthy result of `await check()`, asked again until `timeout` (the bot answers on
    its own over loopback: a condition, not a fixed wait)."""
    async def wait():
        while not (found := await check()):
            await asyncio.sleep(0.02)
        return found

    return await asyncio.wait_for(wait(), timeout)


async def _messages(http: aiohttp.ClientSession, url: str, key: str) -> list[dict]:
    async with http.get(url + "api/state") as response:
        state = await response.json()
    return next(persona for persona in state["personas"] if persona["key"] == key)["messages"]


async def _button(http: aiohttp.ClientSession, url: str, key: str, words: str) -> dict | None:
    for message in reversed(await _messages(http, url, key)):
        for row in message["buttons"]:
            for button in row:
                if words in button["text"].lower() and "data" in button:
                    return {"message_id": message["id"], "data": button["data"]}
    return None


async def _showing(http: aiohttp.ClientSession, url: str, key: str, text: str) -> bool:
    return any(text in (message.get("text") or "") for message in await _messages(http, url, key))


def test_the_production_install_leaves_the_dev_tools_out() -> None:
    """`make run` and `make install` install the runtime only; the product imports none of the dev
    extras (tests, the browser driver, the profiler)."""
    dry = subprocess.run(["make", "-n", "-B", "-C", str(REPO), "run"], check=False, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr
    assert "pip install --quiet -e ." in dry.stdout and "[dev]" not in dry.stdout, dry.stdout
    probe = ("import sys, bot.cli, bot.app, bot.demo, sandbox.web.server, study.export, study.plots; "
             f"print([m for m in {DEV_ONLY!r} if m in sys.modules])")
    imported = subprocess.run([sys.executable, "-c", probe], cwd=REPO, check=False, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "[]"


# --- trialbot init --------------------------------------------------------------------------------


def test_init_writes_a_site_folder_that_the_commands_then_use(cli, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "new-site"
    result = cli("init", str(site))
    assert result.exit_code == 0, result.output
    assert "trialbot db upgrade" in result.output and "trialbot run" in result.output
    assert load_protocol(site / "study.toml").protocol.example, "the copy is the example until the site confirms it"
    assert (site / "study.toml").read_bytes() == EXAMPLE_PROTOCOL.read_bytes()
    shipped = sorted(p.relative_to(MESSAGES_ROOT) for p in MESSAGES_ROOT.glob("*/*.html.j2"))
    assert sorted(p.relative_to(site / "messages") for p in (site / "messages").glob("*/*.html.j2")) == shipped
    env = (site / ".env").read_text()
    assert "TRIALBOT_MESSAGES_DIR=messages" in env.splitlines() and "TELEGRAM_BOT_TOKEN=" in env
    assert (site / ".env").stat().st_mode & 0o077 == 0, ".env will hold the token: owner only"

    # From the site's folder, with its .env, the commands read the site's own texts.
    for name in ("STUDY_FILE", "DATABASE_URL", "TRIALBOT_MESSAGES_DIR"):
        monkeypatch.setenv(name, "")  # registered with monkeypatch, so what .env exports is undone
        monkeypatch.delenv(name)
    monkeypatch.chdir(site)
    (site / "messages" / "en" / "help.html.j2").write_text("{{ broken", encoding="utf-8")
    lint = cli("messages", "lint")
    assert lint.exit_code != 0 and "en/help.html.j2" in lint.output, lint.output


@pytest.mark.parametrize("existing", ["study.toml", ".env", "messages"])
def test_init_never_overwrites_a_site(cli, tmp_path: Path, existing: str) -> None:
    site = tmp_path / "clinic"
    site.mkdir()
    (site / existing).write_text("the site's own\n") if existing != "messages" else (site / existing).mkdir()
    result = cli("init", str(site))
    assert result.exit_code == 2 and "Nothing written" in result.output and existing in result.output
    assert sorted(p.name for p in site.iterdir()) == [existing]


def test_init_into_a_file_is_one_clear_line(cli, tmp_path: Path) -> None:
    target = tmp_path / "a-file"
    target.write_text("x")
    result = cli("init", str(target))
    assert result.exit_code == 2 and "is a file" in result.output and "Traceback" not in result.output


def test_the_demo_without_study_toml_uses_the_shipped_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from bot.demo import demo_protocol

    monkeypatch.delenv("STUDY_FILE", raising=False)
    monkeypatch.chdir(tmp_path)
    said: list[str] = []
    assert demo_protocol(said.append).study.short_name == load_protocol(EXAMPLE_PROTOCOL).study.short_name
    assert len(said) == 1 and str(EXAMPLE_PROTOCOL) in said[0]
    # A STUDY_FILE that names a missing file is the operator's mistake, not a reason to fall back.
    monkeypatch.setenv("STUDY_FILE", str(tmp_path / "missing.toml"))
    from study.protocol import ProtocolError

    with pytest.raises(ProtocolError, match="not found"):
        demo_protocol(said.append)
    assert init_command.ENV_TEMPLATE.exists()


def test_the_readme_names_every_runtime_dependency_and_why() -> None:
    """The README's libraries table lists each package `make install` installs (and says why)."""
    import tomllib

    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[\[<>=!~ ]", requirement, maxsplit=1)[0].lower() for requirement in declared}
    readme = (REPO / "README.md").read_text()
    runtime_table = readme[readme.index("## Libraries, and why"):readme.index("For development only")].lower()
    missing = sorted(name for name in names if name not in runtime_table)
    assert missing == [], f"README's runtime libraries table does not name: {missing}"
