"""A new user's path (issue 19): every failure says what happened and what to do, with the documented exit code.

Each test drives the real ``guildnet`` command (a subprocess) against real servers on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from registry_support import new_org, registry_process

from guildnet.registry.client import RegistryClient

HEAVY = ("sqlalchemy", "aiohttp", "pydantic", "cryptography", "mcp", "nacl", "jsonschema", "alembic")


def guildnet(*args: str, env: dict[str, str] | None = None, timeout: float = 60
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "guildnet.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("command", [[], ["delegate"], ["registry", "search"], ["node", "run"], ["doctor"],
                                     ["keys", "new"], ["witness", "serve"], ["flywheel", "report"],
                                     ["node", "agents"]])
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    """``--help`` must be instant: no database, HTTP, crypto or schema library is imported to print it."""
    probe = ("import sys\nfrom guildnet.cli.main import main\n"
             f"try:\n    main({[*command, '--help']!r})\nexcept SystemExit:\n    pass\n"
             f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Usage:" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "[]"


async def test_search_live_stale_any_and_org_by_name(tmp_path: Path) -> None:
    acme, initech = new_org("acme"), new_org("initech")
    live_key, live = acme.agent("echo", a2a="http://127.0.0.1:9/agents/echo/a2a")
    stale_key, stale = acme.agent("old", ttl_seconds=5)
    other_key, other = initech.agent("echo")
    async with registry_process(f"sqlite:///{tmp_path}/r.db") as url:
        async with RegistryClient(url) as client:
            for key, facts in ((stale_key, stale), (live_key, live), (other_key, other)):
                await client.register(facts, key)
        registered = time.monotonic()
        page = await asyncio.to_thread(guildnet, "registry", "search", "--org", "x" * 129,
                                       env={"GUILDNET_REGISTRY": url})
        assert page.returncode == 1 and "128" in page.stderr, page.stderr
        await asyncio.sleep(max(0.0, registered + 5.5 - time.monotonic()))  # "old" misses its heartbeat

        def ids(*args: str) -> set[str]:
            done = guildnet("registry", "search", *args, "--json", env={"GUILDNET_REGISTRY": url})
            assert done.returncode == 0, done.stderr
            return {a["id"] for a in json.loads(done.stdout)["agents"]}

        everyone = {live.id, stale.id, other.id}
        assert await asyncio.to_thread(ids) == everyone                       # the default is --any
        assert await asyncio.to_thread(ids, "--any") == everyone              # was: stale ones only
        assert await asyncio.to_thread(ids, "--live") == {live.id, other.id}
        assert await asyncio.to_thread(ids, "--stale") == {stale.id}
        assert await asyncio.to_thread(ids, "--org", "acme") == {live.id, stale.id}  # by the name tables show
        assert await asyncio.to_thread(ids, "--org", acme.key.did) == {live.id, stale.id}
        assert await asyncio.to_thread(ids, "--org", "nobody") == set()
        table = await asyncio.to_thread(guildnet, "registry", "search", "--skill", "echo", "--live",
                                        env={"GUILDNET_REGISTRY": url})
        assert "A2A" in table.stdout.splitlines()[0]
        assert "http://127.0.0.1:9/agents/echo/a2a" in table.stdout                  # README promises endpoints


# ---- a federation of real processes: a registry, acme (the worker) and globex (the caller) ----------------------

WORKER = '''
import asyncio
from pathlib import Path

from pydantic import BaseModel

from guildnet.node.agent import FunctionAgent, SkillError, TaskContext


class Text(BaseModel):
    text: str


agent = FunctionAgent("worker", description="skills that fail the ways real ones do")


@agent.skill_handler(id="echo", description="Returns its text")
async def echo(data: Text) -> Text:
    return data


@agent.skill_handler(id="quota", description="Always over quota")
async def quota(data: Text) -> Text:
    raise SkillError("quota exceeded: 0 calls left today, try tomorrow")


@agent.skill_handler(id="crash", description="A bug")
async def crash(data: Text) -> Text:
    raise RuntimeError("a bug in the skill")


@agent.skill_handler(id="slow", description="Eight seconds, with progress")
async def slow(data: Text, ctx: TaskContext) -> Text:
    await ctx.progress("step 1 of 2: warming up")
    try:
        await asyncio.sleep(8)
    except asyncio.CancelledError:
        Path(data.text).write_text("cancelled")
        raise
    return data
'''

CALLER = '''
from pydantic import BaseModel

from guildnet.node.agent import FunctionAgent


class Text(BaseModel):
    text: str


agent = FunctionAgent("caller", description="the caller's own agent")


@agent.skill_handler(id="noop", description="Nothing")
async def noop(data: Text) -> Text:
    return data
'''


def node_config(folder: Path, org: str, agent_file: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "agent.py").write_text(agent_file)
    config = folder / "node.toml"
    config.write_text(f'[node]\norg_name = "{org}"\norg_key = "keys/org.key"\ndb = "sqlite:///node.db"\n\n'
                      '[[agents]]\nagent = "agent.py:agent"\nkey = "keys/agent.key"\n')
    return config


def wait_ready(url: str, process: subprocess.Popen[bytes], within: float = 60) -> None:
    import urllib.request

    ends = time.monotonic() + within
    while time.monotonic() < ends:
        assert process.poll() is None, f"{url} exited with {process.returncode}"
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} not ready within {within} s")


class Federation:
    def __init__(self, root: Path) -> None:
        from registry_support import free_port

        self.root = root
        self.processes: list[subprocess.Popen[bytes]] = []
        self.registry = f"http://127.0.0.1:{free_port()}"
        self.env = {"GUILDNET_REGISTRY": self.registry}
        self.acme = node_config(root / "acme", "acme", WORKER)
        self.globex = node_config(root / "globex", "globex", CALLER)
        self.initech = node_config(root / "initech", "initech", CALLER)  # its node never runs (until a test)
        self.acme_url = ""

    def start(self, url: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"{len(self.processes)}.log").open("wb")
        process = subprocess.Popen([sys.executable, "-m", "guildnet.cli", *args], stdout=subprocess.DEVNULL,
                                   stderr=log, env={**os.environ, **self.env})
        self.processes.append(process)
        wait_ready(url, process)
        return process

    def node(self, config: Path) -> tuple[str, subprocess.Popen[bytes]]:
        from registry_support import free_port

        port = free_port()
        url = f"http://127.0.0.1:{port}"
        return url, self.start(url, "node", "run", str(config), "--port", str(port))

    def delegate(self, skill: str, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return guildnet("delegate", skill, "--config", str(config or self.globex), *args, env=self.env)

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                process.wait(20)


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Any:
    root = tmp_path_factory.mktemp("federation")
    fed = Federation(root)
    try:
        port = fed.registry.rsplit(":", 1)[1]
        fed.start(fed.registry, "registry", "serve", "--port", port, "--db", f"sqlite:///{root}/registry.db")
        fed.acme_url = fed.node(fed.acme)[0]
        fed.node(fed.globex)
        yield fed
    finally:
        fed.stop()


@pytest.mark.slow
def test_success_names_the_organisation_and_the_receipt_state(federation: Federation) -> None:
    done = federation.delegate("echo", "--input", '{"text": "hi"}', "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["output"] == {"text": "hi"} and answer["organisation"]["name"] == "acme"
    assert answer["organisation"]["id"].startswith("did:key:")
    assert answer["receipt_state"] == {"state": "filed"}
    assert answer["attempts"][0]["organisation"] == "acme"
    quiet = federation.delegate("echo", "--input", '{"text": "hi"}', "--quiet")
    assert quiet.returncode == 0 and json.loads(quiet.stdout) == {"text": "hi"} and quiet.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize(("skill", "said"), [("quota", "quota exceeded: 0 calls left today"),
                                             ("crash", "internal error (RuntimeError)")])
def test_a_failing_skill_says_why_and_json_prints_the_error(federation: Federation, skill: str, said: str) -> None:
    text = federation.delegate(skill, "--input", '{"text": "x"}')
    assert text.returncode == 1
    assert f"worker of acme: failure (task ended TASK_STATE_FAILED: {said}" in text.stderr, text.stderr
    assert "bad-receipt" not in text.stderr
    as_json = federation.delegate(skill, "--input", '{"text": "x"}', "--json")
    assert as_json.returncode == 1
    error = json.loads(as_json.stdout)["error"]
    assert error["kind"] == "all-failed" and said in error["attempts"][0]["detail"]
    assert error["attempts"][0]["outcome"] == "failure" and error["attempts"][0]["organisation"] == "acme"
    assert error["receipt_state"]["state"] == "filed"  # a failure is reputation evidence too


@pytest.mark.slow
def test_a_skill_nobody_offers_suggests_the_near_ones(federation: Federation) -> None:
    done = federation.delegate("Echo", "--input", '{"text": "x"}')
    assert done.returncode == 1
    assert "no live agent of another organisation offers skill 'Echo'" in done.stderr
    assert "did you mean: echo?" in done.stderr and "registry search --skill Echo" in done.stderr
    explained = federation.delegate("ecoh", "--input", "{}", "--explain", "--json")
    assert explained.returncode == 1
    error = json.loads(explained.stdout)["error"]
    assert error["kind"] == "no-candidate" and error["similar"] == ["echo"]


@pytest.mark.slow
def test_bad_input_is_caught_before_any_peer_is_called(federation: Federation, tmp_path: Path) -> None:
    done = federation.delegate("echo", "--input", '{"txt": 1}', "--json")
    assert done.returncode == 2
    error = json.loads(done.stdout)["error"]
    assert error["kind"] == "invalid-input" and "'text' is a required property" in error["message"]
    assert "nobody was called" in error["message"] and error["attempts"][0]["outcome"] == "invalid-input"
    missing = federation.delegate("echo", "--input", f"@{tmp_path}/missing.json")
    assert missing.returncode == 2 and "does not exist" in missing.stderr and "Errno" not in missing.stderr
    as_json = federation.delegate("echo", "--input", "not json", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["error"]["kind"] == "bad-input"


@pytest.mark.slow
def test_the_deadline_cancels_the_peers_task_and_progress_is_shown(federation: Federation, tmp_path: Path) -> None:
    mark = tmp_path / "cancelled"
    started = time.monotonic()
    done = federation.delegate("slow", "--input", json.dumps({"text": str(mark)}), "--deadline", "3")
    assert done.returncode == 1 and time.monotonic() - started < 8 + 2
    assert "worker: step 1 of 2: warming up" in done.stderr            # the peer's progress, as it came
    assert "timeout" in done.stderr and "--deadline" in done.stderr
    assert mark.read_text() == "cancelled"                              # the peer stopped working on it


@pytest.mark.slow
def test_ctrl_c_exits_130_and_cancels_the_peers_task(federation: Federation, tmp_path: Path) -> None:
    import signal

    mark = tmp_path / "cancelled"
    process = subprocess.Popen([sys.executable, "-m", "guildnet.cli", "delegate", "slow", "--config",
                                str(federation.globex), "--input", json.dumps({"text": str(mark)})],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, **federation.env},
                               # as in a terminal: a test run started as a shell's background job inherits SIGINT
                               # ignored, which Python (rightly) keeps ignored
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert process.stderr is not None
    line = process.stderr.readline()  # the first progress line: the peer is working
    assert "step 1 of 2" in line, line
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Aborted!" not in stderr
    ends = time.monotonic() + 5
    while not mark.exists() and time.monotonic() < ends:
        time.sleep(0.1)
    assert mark.read_text() == "cancelled"


@pytest.mark.slow
def test_a_receipt_of_a_caller_whose_node_never_ran_is_kept_and_filed_later(federation: Federation) -> None:
    import sqlite3

    done = federation.delegate("echo", "--input", '{"text": "hi"}', "--json", config=federation.initech)
    assert done.returncode == 0, done.stderr
    state = json.loads(done.stdout)["receipt_state"]
    assert state["state"] == "pending" and "not registered" in state["reason"]
    assert "guildnet node run" in state["hint"]
    database = federation.initech.parent / "node.db"
    assert sqlite3.connect(database).execute("SELECT state FROM receipt_outbox").fetchall() == [("pending",)]
    _, process = federation.node(federation.initech)  # registers its agent, then files what it kept
    ends = time.monotonic() + 15
    while time.monotonic() < ends:
        if sqlite3.connect(database).execute("SELECT COUNT(*) FROM receipt_outbox").fetchone() == (0,):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the kept receipt was not filed")
    process.terminate()
    process.wait(20)


@pytest.mark.slow
def test_a_receipt_whose_registry_stopped_during_the_delegation_is_kept_and_filed_later(tmp_path: Path) -> None:
    """The registry goes away while the peer works: the caller still gets its answer (exit 0), is told the receipt
    is kept, and its node files it once the registry is back."""
    import sqlite3

    fed = Federation(tmp_path)
    port = fed.registry.rsplit(":", 1)[1]
    serve = ("registry", "serve", "--port", port, "--db", f"sqlite:///{tmp_path}/registry.db")
    try:
        registry = fed.start(fed.registry, *serve)
        fed.node(fed.acme)
        _, globex = fed.node(fed.globex)  # registers the calling agent, so the receipt is the registry's to take
        globex.terminate()
        globex.wait(20)
        process = subprocess.Popen([sys.executable, "-m", "guildnet.cli", "delegate", "slow", "--config",
                                    str(fed.globex), "--input", json.dumps({"text": str(tmp_path / "mark")})],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, **fed.env})
        assert process.stderr is not None
        line = process.stderr.readline()  # the peer is working: stop the registry now
        assert "step 1 of 2" in line, line
        registry.terminate()
        registry.wait(20)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert json.loads(stdout) == {"text": str(tmp_path / "mark")}
        assert "receipt kept, not yet filed (your node files it when the registry takes it): " \
               f"RegistryUnreachable: cannot reach the registry at {fed.registry}" in stderr, stderr
        assert "guildnet node run CONFIG) files the receipt when it does" in stderr, stderr
        database = fed.root / "globex" / "node.db"
        assert sqlite3.connect(database).execute("SELECT state FROM receipt_outbox").fetchall() == [("pending",)]

        fed.start(fed.registry, *serve)  # the same registry, back on its file
        assert sqlite3.connect(tmp_path / "registry.db").execute("SELECT COUNT(*) FROM receipts").fetchone() == (0,)
        fed.node(fed.globex)  # the caller's node files what it kept
        ends = time.monotonic() + 30
        while sqlite3.connect(database).execute("SELECT COUNT(*) FROM receipt_outbox").fetchone() != (0,):
            assert time.monotonic() < ends, "the kept receipt was not filed"
            time.sleep(0.2)
        assert sqlite3.connect(tmp_path / "registry.db").execute("SELECT COUNT(*) FROM receipts").fetchone() == (1,)
    finally:
        fed.stop()


@pytest.mark.slow
def test_registry_errors_say_it_is_the_registry_and_what_to_check(federation: Federation) -> None:
    from registry_support import free_port

    nowhere = f"http://127.0.0.1:{free_port()}"
    down = guildnet("registry", "search", "--registry", nowhere)
    assert down.returncode == 1 and f"cannot reach the registry at {nowhere}" in down.stderr
    assert "is it running" in down.stderr and "Traceback" not in down.stderr
    assert "hint: start the registry (`guildnet registry serve`)" in down.stderr
    for delegated in (federation.delegate("echo", "--input", "{}", "--registry", nowhere, "--json"),
                      guildnet("registry", "search", "--registry", nowhere, "--json")):
        assert delegated.returncode == 1
        error = json.loads(delegated.stdout)["error"]  # the shape of every other --json failure, with its hint
        assert error["kind"] == "registry" and f"cannot reach the registry at {nowhere}" in error["message"]
        assert "guildnet registry serve" in error["hint"] and "--registry URL" in error["hint"], error
    at_a_node = guildnet("registry", "search", "--registry", federation.acme_url)
    assert at_a_node.returncode == 1 and "is this the URL of a guildnet registry (not a node's)?" in at_a_node.stderr
    assert at_a_node.stderr.count("404 Not Found") == 1, at_a_node.stderr  # the status once, not twice
    assert "hint: give the registry's own URL" in at_a_node.stderr


@pytest.mark.slow
def test_a_node_says_once_what_is_wrong_with_its_registry_and_when_it_answers_again(
        federation: Federation, tmp_path: Path) -> None:
    from registry_support import free_port

    port = free_port()
    config = node_config(tmp_path / "hooli", "hooli", CALLER)
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        node = subprocess.Popen([sys.executable, "-m", "guildnet.cli", "node", "run", str(config), "--port",
                                 str(free_port()), "--registry", f"http://127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=log)
    registry = None
    try:
        ends = time.monotonic() + 30
        while "cannot reach the registry" not in log_path.read_text() and time.monotonic() < ends:
            time.sleep(0.2)
        time.sleep(4)  # a few retries with back-off
        registry = subprocess.Popen([sys.executable, "-m", "guildnet.cli", "registry", "serve", "--port", str(port),
                                     "--db", f"sqlite:///{tmp_path}/registry.db"], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
        ends = time.monotonic() + 40
        while "answers again" not in log_path.read_text() and time.monotonic() < ends:
            time.sleep(0.2)
        text = log_path.read_text()
        assert "answers again" in text, text
        said = [line for line in text.splitlines() if "cannot reach the registry" in line]
        assert len(said) == 2, text  # once by the publisher, once by the log audit: not once per retry
    finally:
        for process in (node, registry):
            if process is not None:
                process.terminate()
                process.wait(20)


@pytest.mark.slow
def test_a_node_pointed_at_a_node_says_so_once(federation: Federation, tmp_path: Path) -> None:
    from registry_support import free_port

    config = node_config(tmp_path / "hooli", "hooli", CALLER)
    log_path = tmp_path / "node.log"
    with log_path.open("wb") as log:
        node = subprocess.Popen([sys.executable, "-m", "guildnet.cli", "node", "run", str(config), "--port",
                                 str(free_port()), "--registry", federation.acme_url],
                                stdout=subprocess.DEVNULL, stderr=log)

    def said() -> list[str]:
        return [line for line in log_path.read_text().splitlines() if "is this the URL of a guildnet registry" in line]

    try:  # wait for both to say it (a fixed sleep was too short on a busy machine), then for a few retries more
        ends = time.monotonic() + 60
        while len(said()) < 2 and time.monotonic() < ends:
            time.sleep(0.2)
        time.sleep(5)
    finally:
        node.terminate()
        node.wait(20)
    assert len(said()) == 2, said()  # the publisher and the log audit, each once: not once per retry


@pytest.mark.slow
def test_a_taken_port_is_said_plainly_and_nothing_claims_to_serve(federation: Federation) -> None:
    port = federation.acme_url.rsplit(":", 1)[1]
    done = guildnet("node", "run", str(federation.globex), "--port", port, env=federation.env)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: the port is taken" in done.stderr and "--port" in done.stderr
    assert "guildnet.cli.node" in done.stderr and "serving on" not in done.stderr
    assert "Traceback" not in done.stderr


def test_config_mistakes_name_the_fix_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(CALLER.replace("agent = FunctionAgent", "agnet = FunctionAgent")
                                       .replace("@agent.", "@agnet."))
    cases = {
        'port = "abc"\n': "'port' must be an integer (got 'abc')",
        "prot = 9100\n": "unknown key 'prot' (did you mean 'port'?)",
    }
    for line, said in cases.items():
        path = tmp_path / "node.toml"
        path.write_text(f'[node]\norg_name = "a"\norg_key = "org.key"\n{line}\n[[agents]]\nagent = "agent.py:agent"\n'
                        'key = "agent.key"\n')
        done = guildnet("node", "run", str(path))
        assert done.returncode == 2 and said in done.stderr, done.stderr
    path.write_text('[node]\norg_name = "a"\norg_key = "org.key"\n\n[[agent]]\nagent = "agent.py:agnet"\n')
    done = guildnet("node", "run", str(path))
    assert done.returncode == 2 and "unknown table [agent] (did you mean [[agents]]?)" in done.stderr
    path.write_text('[node]\norg_name = "a"\norg_key = "org.key"\n\n[[agents]]\nagent = "agent.py:agent"\n'
                    'key = "agent.key"\n')
    done = guildnet("node", "run", str(path))
    assert done.returncode == 2
    assert "agent.py has no attribute 'agent' (did you mean 'agnet'?); its agents: agnet" in done.stderr


def test_doctor_warns_about_keys_a_new_node_creates(tmp_path: Path) -> None:
    config = node_config(tmp_path, "acme", CALLER)
    done = guildnet("doctor", str(config))
    assert done.returncode == 0, done.stdout
    assert "warn  org key" in done.stdout and "the node creates it when it first runs" in done.stdout
    assert "all checks passed (2 warning(s))" in done.stdout


@pytest.mark.slow
def test_a_node_shows_its_agents_and_a_second_agent_renames_no_tool(federation: Federation, tmp_path: Path) -> None:
    import urllib.request

    with urllib.request.urlopen(f"{federation.acme_url}/") as answer:  # was 405
        index = json.loads(answer.read())
    assert index["organisation"]["name"] == "acme" and index["root_card"]["agent"] == "worker"
    assert {s["id"]: s["mcp_tool"] for s in index["agents"][0]["skills"]}["echo"] == "echo"
    assert index["endpoints"]["mcp"] == f"{federation.acme_url}/mcp"
    config = node_config(tmp_path, "acme", WORKER)
    (tmp_path / "second.py").write_text(WORKER.replace('FunctionAgent("worker"', 'FunctionAgent("second"'))
    with config.open("a") as file:
        file.write('\n[[agents]]\nagent = "second.py:agent"\nkey = "keys/second.key"\n')
    listed = guildnet("node", "agents", str(config), "--json")
    assert listed.returncode == 0, listed.stderr
    agents = {a["name"]: {s["id"]: s["mcp_tool"] for s in a["skills"]} for a in json.loads(listed.stdout)["agents"]}
    assert agents["worker"]["echo"] == "echo" and agents["second"]["echo"] == "second.echo"
    table = guildnet("node", "agents", str(config))
    assert "root agent card: worker's" in table.stdout and "skill echo: MCP tool second.echo" in table.stdout


@pytest.mark.slow
def test_registry_show_says_why_there_is_no_reputation(federation: Federation) -> None:
    agent = json.loads(guildnet("node", "agents", str(federation.acme), "--json").stdout)["agents"][0]["id"]
    shown = guildnet("registry", "show", agent, env=federation.env)
    assert shown.returncode == 0, shown.stderr
    assert "reputation: unavailable (this registry names no pre-trusted organisations (--pretrusted)" in shown.stdout
    as_json = json.loads(guildnet("registry", "show", agent, "--json", env=federation.env).stdout)
    assert "pre-trusted" in as_json["reputation"]["echo"]["unavailable"]


def test_the_function_agent_docstring_example_runs() -> None:
    """Its example used ``@agent.skill(id=...)``, which raised TypeError."""
    import doctest

    from guildnet.node import agent

    result = doctest.testmod(agent)
    assert result.attempted >= 5 and result.failed == 0
