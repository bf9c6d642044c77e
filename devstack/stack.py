"""Start, watch and stop the local mesh."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx

from devstack import demo, llm_server, processes
from devstack.processes import describe_port_holders, port_is_free, spawn_child
from gateway.keys import issue_demo_keys

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("retrieval", "triage", "escalation", "outreach", "concierge")
# How long the readiness check waits for the LLM server's model list: under load, a CPU
# server answers it only between generation steps (measured up to 6 s in the drill).
LLM_PROBE_TIMEOUT_S = 15.0
# What the gateway's /readyz says while this file exists (READY_GATE_FILE): the stack is up
# but the demo knowledge base is still being ingested, so a first question would find nothing.
WARMING_MESSAGE = "the demo knowledge base is still being ingested"


@dataclass
class StackConfig:
    data_dir: Path = REPO_ROOT / "var"
    gateway_port: int = 8080
    # Ports of retrieval, triage, escalation, outreach, concierge, in that order.
    service_ports: tuple[int, ...] = (50051, 50052, 50054, 50055, 50053)
    llm_port: int = 8081
    # An external OpenAI-compatible server (e.g. vLLM) instead of the embedded one.
    llm_base_url: str | None = None
    llm_model: str = llm_server.MODEL_ALIAS
    demo_kb: Path | None = REPO_ROOT / "kb" / "demo"
    demo_tenant: str = "demo"
    # Labelled contact reasons the demo tenant's intent model is trained from on first start, with
    # demo_kb (in the background, after the knowledge base; None: no model, intent stays empty).
    demo_intents: Path | None = demo.DEMO_INTENTS
    # The actions service's port, and the demo company's back office's (demoshop/). `make run` asks
    # for 50056 and 8090; 0 means a free port chosen when the Stack is made, so that the tests and
    # benchmarks that give the five services above free ports start these two beside any other stack.
    actions_port: int = 0
    demoshop_port: int = 0
    # The τ-bench retail data: demoshop's records and, with demo_kb, the shop tenant's policy (wiki.md)
    # and API keys. None, or a folder without the data: no demoshop and no shop tenant (a note says so).
    shop_data: Path | None = demo.SHOP_DATA
    shop_tenant: str = "shop"
    extra_env: dict[str, str] = field(default_factory=dict)
    # Start Arize Phoenix (its own venv, `make trace-ui-install`) as the local trace backend and UI.
    trace_ui: bool = False
    trace_ui_port: int = 6006
    trace_ui_otlp_port: int = 4317

    def port(self, service: str) -> int:
        if service == "actions":
            return self.actions_port
        return self.service_ports[SERVICES.index(service)]

    @property
    def has_shop_data(self) -> bool:
        return self.shop_data is not None and (self.shop_data / "orders.json").is_file()

    def address(self, service: str) -> str:
        return f"127.0.0.1:{self.port(service)}"


class StackError(RuntimeError):
    pass


class Stack:
    """The processes of one local mesh. Use as a context manager, or start()/stop()."""

    def __init__(self, config: StackConfig):
        # Chosen now, in the caller's config too: ports(), the children's addresses and the caller agree.
        if not config.actions_port:
            config.actions_port = free_port()
        if not config.demoshop_port:
            config.demoshop_port = free_port()
        self.config = config
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = config.data_dir / "logs"
        # How each process was started, so that the supervisor can start it again.
        self._commands: dict[str, tuple[list[str], dict[str, str] | None]] = {}
        self._restarts: dict[str, list[float]] = {}
        # Fresh API keys of the demo tenant, role -> key, made at start (only hashes are stored).
        self.api_keys: dict[str, str] = {}
        # The same for the shop tenant (empty without its data).
        self.shop_keys: dict[str, str] = {}
        # What the terminal should hear about the start besides the addresses (e.g. what was skipped).
        self.notes: list[str] = []
        # demoshop's bearer token, fresh each start: only demoshop and the actions service know it.
        self.demoshop_token = secrets.token_urlsafe(24)
        # Set when stop() begins: background work (the demo intent model) then fails quietly.
        self.stopping = threading.Event()

    @property
    def ready_gate_file(self) -> Path:
        return self.config.data_dir / "gateway" / "warming"

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.config.gateway_port}"

    @property
    def demoshop_url(self) -> str:
        return f"http://127.0.0.1:{self.config.demoshop_port}"

    @property
    def llm_base_url(self) -> str:
        return self.config.llm_base_url or f"http://127.0.0.1:{self.config.llm_port}/v1"

    def __enter__(self) -> Stack:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _env(self, name: str) -> dict[str, str]:
        config = self.config
        env = {
            **os.environ,
            **config.extra_env,
            "OTEL_SERVICE_NAME": name,
            "DATA_DIR": str(config.data_dir),
            "RETRIEVAL_ADDR": config.address("retrieval"),
            "TRIAGE_ADDR": config.address("triage"),
            "ESCALATION_ADDR": config.address("escalation"),
            "OUTREACH_ADDR": config.address("outreach"),
            "CONCIERGE_ADDR": config.address("concierge"),
            "ACTIONS_ADDR": config.address("actions"),
            "LLM_BASE_URL": self.llm_base_url,
            "LLM_MODEL": config.llm_model,
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        if name == "gateway":
            env["READY_GATE_FILE"] = str(self.ready_gate_file)
        if name == "actions" and "demoshop" in self._commands:
            # What the shop catalog (services/actions/catalogs/shop.json) reads: its system's token and where it is.
            env["DEMOSHOP_TOKEN"] = self.demoshop_token
            env["SHOP_BACKOFFICE_URL"] = self.demoshop_url
        if name == "llm":
            env.pop("PORT", None)  # llama_cpp.server reads PORT too; its port comes from the command line.
        else:
            env["PORT"] = str(config.gateway_port if name == "gateway" else config.port(name))
        return env

    @property
    def trace_ui_url(self) -> str:
        return f"http://127.0.0.1:{self.config.trace_ui_port}"

    def _start_trace_ui(self) -> None:
        phoenix = REPO_ROOT / ".venv-phoenix" / "bin" / "phoenix"
        if not phoenix.exists():
            raise StackError("the trace UI is not installed: run `make trace-ui-install` first")
        self.config.extra_env.update(
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{self.config.trace_ui_otlp_port}",
                "OTEL_EXPORTER_OTLP_INSECURE": "true",
                "OTEL_METRICS_EXPORTER": "none",  # Phoenix stores traces only
            }
        )
        self._spawn(
            "phoenix", [str(phoenix), "serve"],
            env={
                "PHOENIX_WORKING_DIR": str(self.config.data_dir / "phoenix"),
                "PHOENIX_HOST": "127.0.0.1",
                "PHOENIX_PORT": str(self.config.trace_ui_port),
                "PHOENIX_GRPC_PORT": str(self.config.trace_ui_otlp_port),
            },
        )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.trace_ui_url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise StackError(f"trace UI did not start; see {self.log_dir / 'phoenix.log'}")

    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._commands[name] = (argv, env)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        with (self.log_dir / f"{name}.log").open("ab") as log_file:
            # Its own session (Ctrl+C in the terminal reaches us only; we stop children in order),
            # and it dies with us should we die any other way.
            self.processes[name] = spawn_child(
                argv, cwd=REPO_ROOT, env={**os.environ, **env} if env else self._env(name),
                stdout=log_file, stderr=subprocess.STDOUT,
            )

    def ports(self) -> dict[int, str]:
        """Port -> what this stack starts on it."""
        config = self.config
        ports = {config.port(name): name for name in SERVICES}
        ports[config.actions_port] = "actions"
        if config.has_shop_data:
            ports[config.demoshop_port] = "demoshop"
        ports[config.gateway_port] = "gateway"
        if config.llm_base_url is None:
            ports[config.llm_port] = "llm"
        if config.trace_ui:
            ports[config.trace_ui_port] = "phoenix"
            ports[config.trace_ui_otlp_port] = "phoenix (OTLP)"
        return ports

    def check_ports(self) -> None:
        """Refuse to start next to anything that listens on one of our ports (a stack left
        from an earlier run, say): its clients would be split between the two."""
        taken = [
            f"port {port} ({name}) is held by {describe_port_holders(port)}"
            for port, name in self.ports().items()
            if not port_is_free(port)
        ]
        if taken:
            raise StackError("; ".join(taken) + ". Stop it first (left from an earlier `make run`?).")

    def _start_demoshop(self) -> None:
        """The demo company's back office on the τ-bench retail data, its database under data_dir
        (loaded on the first start, kept afterwards), or a note when the data is not there."""
        config = self.config
        if not config.has_shop_data:
            if config.shop_data is not None:
                self.notes.append(f"demoshop and the {config.shop_tenant} tenant skipped: "
                                  f"no τ-bench retail data in {config.shop_data}")
            return
        assert config.shop_data is not None
        argv = [sys.executable, "-m", "demoshop", "--port", str(config.demoshop_port), "--data", str(config.shop_data),
                "--db", str(config.data_dir / "demoshop" / "shop.db")]
        self._spawn("demoshop", argv, env={"DEMOSHOP_TOKEN": self.demoshop_token})

    def _set_up_shop_tenant(self) -> None:
        """The shop tenant's policy (wiki.md, read where it lies) in its knowledge base, and its API keys."""
        config = self.config
        assert config.shop_data is not None
        try:
            line = demo.ingest_policy(config.address("retrieval"), config.shop_tenant, config.shop_data / "wiki.md")
        except (grpc.RpcError, OSError, ValueError) as error:
            raise StackError(f"ingesting {config.shop_data / 'wiki.md'} failed: {error}") from None
        self.notes.append(line)
        self.shop_keys = demo.issue_tenant_keys(self.config.data_dir / "gateway" / "api_keys.json", config.shop_tenant)

    def start(self, timeout_s: float = 180.0) -> None:
        self.check_ports()
        try:
            warming = self.config.demo_kb is not None
            if warming:
                self.ready_gate_file.parent.mkdir(parents=True, exist_ok=True)
                self.ready_gate_file.write_text(WARMING_MESSAGE + "\n")
            else:
                self.ready_gate_file.unlink(missing_ok=True)
            if self.config.trace_ui:
                self._start_trace_ui()
            if self.config.llm_base_url is None:
                model = llm_server.ensure_model(self.config.data_dir / "models")
                self._spawn("llm", llm_server.command(model, self.config.llm_port))
            # Before the actions service (its connector's target), so stopped after it (stop() goes backwards).
            self._start_demoshop()
            for name in SERVICES:
                self._spawn(name, [sys.executable, "-m", f"services.{name}"])
            self._spawn("actions", [sys.executable, "-m", "services.actions"])
            self.api_keys = issue_demo_keys(self.config.data_dir / "gateway" / "api_keys.json", self.config.demo_tenant)
            self._spawn("gateway", [sys.executable, "-m", "gateway"])
            self.wait_ready(timeout_s, warming=warming)
            if self.config.demo_kb is not None:
                self.ingest(self.config.demo_kb, self.config.demo_tenant)
                if "demoshop" in self.processes:
                    self._set_up_shop_tenant()
                self.ready_gate_file.unlink(missing_ok=True)
                self.wait_ready(timeout_s)
                if self.config.demo_intents is not None:
                    demo.train_intents_in_background(
                        self.config.address("triage"), self.config.demo_tenant, self.config.demo_intents,
                        stopping=self.stopping,
                    )
        except BaseException:
            self.stop()
            raise

    def wait_ready(self, timeout_s: float, warming: bool = False) -> None:
        """Wait for the gateway's /readyz to be 200; `warming`: or for every backend to serve
        while the ready gate says the stack is still warming up (the demo ingest is to come)."""
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name, process in self.processes.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with {process.returncode}; see {self.log_dir / name}.log")
            try:
                if self.config.llm_base_url is None:
                    # Generous: a CPU server busy generating for customers answers late, but answers.
                    httpx.get(f"{self.llm_base_url}/models", timeout=LLM_PROBE_TIMEOUT_S).raise_for_status()
                if "demoshop" in self.processes:
                    httpx.get(f"{self.demoshop_url}/healthz", timeout=2.0).raise_for_status()
                response = httpx.get(f"{self.gateway_url}/readyz", timeout=2.0)
                if response.status_code == 200 or (warming and _only_warming(response)):
                    return
                last = response.text
            except httpx.HTTPError as error:
                last = f"{type(error).__name__}"
            time.sleep(0.25)
        raise StackError(f"mesh not ready after {timeout_s:.0f}s: {last}")

    def supervise(self, max_restarts: int = 5, window_s: float = 60.0) -> list[str]:
        """Start again every process that died; returns their names. A process that died
        `max_restarts` times within `window_s` is crash-looping: that raises StackError."""
        restarted = []
        for name, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            now = time.monotonic()
            recent = [t for t in self._restarts.get(name, []) if now - t < window_s]
            if len(recent) >= max_restarts:
                raise StackError(
                    f"{name} died {len(recent) + 1} times within {window_s:.0f}s (last exit {process.returncode}); "
                    f"see {self.log_dir / name}.log"
                )
            self._restarts[name] = [*recent, now]
            argv, env = self._commands[name]
            self._spawn(name, argv, env)
            restarted.append(name)
        return restarted

    def ingest(self, folder: Path, tenant: str) -> None:
        argv = [sys.executable, "-m", "services.retrieval.ingest", "--target", self.config.address("retrieval"),
                "--tenant", tenant, str(folder)]
        # In our process group (Ctrl+C reaches it too), and it dies with us like the services.
        process = spawn_child(argv, cwd=REPO_ROOT, new_session=False)
        try:
            code = process.wait(timeout=600)
        except BaseException:
            process.kill()
            process.wait()
            raise
        if code != 0:
            raise StackError(f"ingesting {folder} failed (exit {code})")

    def stop(self, grace_s: float = 10.0) -> None:
        self.stopping.set()
        try:
            # Edge first, LLM last: nothing is left calling a backend that is already gone.
            for name in reversed(list(self.processes)):
                process = self.processes[name]
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for process in self.processes.values():
                try:
                    process.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        except KeyboardInterrupt:
            # A second Ctrl+C (or SIGTERM, SIGHUP) while stopping: no more waiting, kill the rest.
            self._kill_all()
        finally:
            self.processes.clear()
            self.ready_gate_file.unlink(missing_ok=True)

    def _kill_all(self) -> None:
        stopping = set(processes.STOP_SIGNALS) | {signal.SIGINT}
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, stopping)
        try:
            for process in self.processes.values():
                if process.poll() is None:
                    process.kill()
            for process in self.processes.values():
                process.wait()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _only_warming(response: httpx.Response) -> bool:
    """A 503 from /readyz that says every backend serves and only the ready gate is closed."""
    if response.status_code != 503:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    backends = body.get("backends") or {}
    return bool(body.get("warming")) and bool(backends) and all(state == "SERVING" for state in backends.values())


# Ports this process handed out for children to listen on (never twice).
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_port() -> int:
    """A port for a child to listen on, free now. Taken below the kernel's ephemeral range: a
    port from bind(0) is in that range, where any outgoing connection (the mesh's own, while
    it starts) may take it before the child binds it (CI once saw a service exit with
    EX_UNAVAILABLE that way)."""
    low, high = _ephemeral_range()
    # Below the range where there is room, else above it.
    bottom, top = (max(1_024, low - 12_000), low) if low - 1_024 >= 1_000 else (high + 1, 65_536)
    for _ in range(500):
        port = secrets.choice(range(bottom, top))
        if port not in _handed_out and port_is_free(port):
            _handed_out.add(port)
            return port
    raise StackError(f"no free port between {bottom} and {top}")
