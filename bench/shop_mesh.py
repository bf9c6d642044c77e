"""What the `shop` tenant's benchmarks (bench/actions_tau.py, bench/actions_latency.py) share:
the mesh they talk to, and a customer's conversation through the gateway.

The mesh is either started here (devstack on free 127.0.0.1 ports, throw-away state, the
embedded llama.cpp server unless --llm-base-url names another, e.g. vLLM), or a running
`make run` given by --gateway: the shop tenant's keys come from --channel-key/--agent-key
(or are created in its key file and revoked afterwards), and the back office's token, which
`make run` prints, from --backoffice-token."""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from devstack import demo
from devstack.llm_server import MODEL_ALIAS
from devstack.stack import REPO_ROOT, Stack, StackConfig, StackError
from gateway.keys import Role, create_key, revoke_key

SHOP_TENANT = "shop"
# What `make run` uses: the defaults when --gateway names it.
MAKE_RUN_GATEWAY = "http://127.0.0.1:8080"
MAKE_RUN_BACKOFFICE = "http://127.0.0.1:8090"
MAKE_RUN_LLM = "http://127.0.0.1:8081/v1"
MAKE_RUN_KEYS_FILE = REPO_ROOT / "var" / "gateway" / "api_keys.json"
# A customer's message waits this long for its answer: above the gateway's own 60 s budget,
# so that a slow turn comes back as the gateway's 504, not as our timeout.
MESSAGE_TIMEOUT_S = 90.0


@dataclass(frozen=True)
class ShopTarget:
    """Where the shop tenant is served, and the keys to talk to it."""

    gateway_url: str
    channel_key: str
    agent_key: str
    backoffice_url: str
    # None: the back office cannot be reset or read (no token given).
    backoffice_token: str | None
    llm_base_url: str
    llm_model: str
    # "started here" or "running at <url>": said in the report.
    origin: str

    def backoffice(self, timeout_s: float = 60.0) -> httpx.Client:
        if self.backoffice_token is None:
            raise SystemExit("the back office's token is needed (--backoffice-token; `make run` prints it)")
        return httpx.Client(
            base_url=self.backoffice_url, timeout=timeout_s,
            headers={"Authorization": f"Bearer {self.backoffice_token}"},
        )

    def gateway(self, key: str, timeout_s: float = MESSAGE_TIMEOUT_S) -> httpx.Client:
        return httpx.Client(base_url=self.gateway_url, timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the mesh (default: started here on free ports)")
    group.add_argument("--gateway", help=f"a running mesh's gateway instead (`make run`: {MAKE_RUN_GATEWAY})")
    group.add_argument("--channel-key", default=os.environ.get("SHOP_CHANNEL_KEY"),
                       help="with --gateway: the shop tenant's channel key (SHOP_CHANNEL_KEY)")
    group.add_argument("--agent-key", default=os.environ.get("SHOP_AGENT_KEY"),
                       help="with --gateway: the shop tenant's agent key (SHOP_AGENT_KEY)")
    group.add_argument("--keys-file", type=Path, default=MAKE_RUN_KEYS_FILE,
                       help="with --gateway and no keys given: create them in this key store, revoke them after")
    group.add_argument("--backoffice", default=MAKE_RUN_BACKOFFICE, help="with --gateway: the back office")
    group.add_argument("--backoffice-token", default=os.environ.get("DEMOSHOP_TOKEN"),
                       help="with --gateway: the back office's token (DEMOSHOP_TOKEN; `make run` prints it)")
    group.add_argument("--llm-base-url", help="started here: this OpenAI-compatible server instead of the embedded "
                                              "one (e.g. vLLM); with --gateway: only the customer simulator's default")
    group.add_argument("--llm-model", default=MODEL_ALIAS, help="the model that server serves")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def open_target(
    args: argparse.Namespace, say: Any = print, extra_env: dict[str, str] | None = None,
    after_start: Callable[[], object] | None = None,
) -> Iterator[ShopTarget]:
    """The target the arguments name, for the duration of the block; `extra_env` goes to the
    processes of a mesh started here (e.g. where to export traces), and `after_start` is called
    once its processes are all started (e.g. a gRPC server of the caller's: one running while
    the mesh's processes are forked can break their start, "epoll_wait error: Bad file descriptor")."""
    if args.gateway:
        with _running(args) as target:
            yield target
        return
    with tempfile.TemporaryDirectory(prefix="shop-bench-") as tmp:
        data_dir = Path(tmp)
        # The joined GGUF is reused from the repository's var/models (made once, 0.5 GB).
        (REPO_ROOT / "var" / "models").mkdir(parents=True, exist_ok=True)
        (data_dir / "models").symlink_to((REPO_ROOT / "var" / "models").resolve(), target_is_directory=True)
        config = StackConfig(
            data_dir=data_dir,
            gateway_port=free_port(),
            service_ports=tuple(free_port() for _ in range(5)),
            llm_port=free_port(),
            llm_base_url=args.llm_base_url,
            llm_model=args.llm_model,
            # Only the shop tenant is needed: its policy and keys are set up below, not the demo KB.
            demo_kb=None,
            extra_env={"RATE_LIMIT_PER_S": "1000", "RATE_LIMIT_BURST": "1000", **(extra_env or {})},
        )
        if not config.has_shop_data:
            raise SystemExit(f"no τ-bench retail data in {config.shop_data}")
        assert config.shop_data is not None
        stack = Stack(config)
        started = time.monotonic()
        say(f"starting the mesh (logs in {stack.log_dir}) ...")
        try:
            stack.start()
        except StackError as error:
            # The logs live in the throw-away folder: say the end of the failed process's before it goes.
            for log in sorted(stack.log_dir.glob("*.log")):
                if log.name in str(error):
                    say(f"--- the end of {log.name} ---\n" + "\n".join(log.read_text().splitlines()[-30:]))
            raise
        try:
            if after_start is not None:
                after_start()
            say(demo.ingest_policy(config.address("retrieval"), SHOP_TENANT, config.shop_data / "wiki.md"))
            keys = demo.issue_tenant_keys(data_dir / "gateway" / "api_keys.json", SHOP_TENANT)
            say(f"mesh ready in {time.monotonic() - started:.0f}s")
            yield ShopTarget(
                gateway_url=stack.gateway_url, channel_key=keys["channel"], agent_key=keys["agent"],
                backoffice_url=stack.demoshop_url, backoffice_token=stack.demoshop_token,
                llm_base_url=stack.llm_base_url, llm_model=config.llm_model,
                origin="started here" + (f" on {args.llm_base_url}" if args.llm_base_url else " (embedded LLM)"),
            )
        finally:
            stack.stop()


@contextlib.contextmanager
def _running(args: argparse.Namespace) -> Iterator[ShopTarget]:
    created: list[str] = []
    channel, agent = args.channel_key, args.agent_key
    if not (channel and agent):
        if not args.keys_file.exists():
            raise SystemExit("--gateway needs --channel-key and --agent-key, or a --keys-file to create them in")
        for role in (Role.CHANNEL, Role.AGENT):
            key, record = create_key(args.keys_file, SHOP_TENANT, role, f"bench-{role.label}")
            created.append(record.key_id)
            channel, agent = (key, agent) if role == Role.CHANNEL else (channel, key)
        time.sleep(1.2)  # the gateway re-reads its key file at most once a second
    try:
        yield ShopTarget(
            gateway_url=args.gateway.rstrip("/"), channel_key=channel, agent_key=agent,
            backoffice_url=args.backoffice.rstrip("/"), backoffice_token=args.backoffice_token,
            llm_base_url=args.llm_base_url or MAKE_RUN_LLM, llm_model=args.llm_model,
            origin=f"running at {args.gateway}",
        )
    finally:
        for key_id in created:
            revoke_key(args.keys_file, key_id)


class Conversation:
    """One customer's conversation with the shop's assistant through the gateway's chat API."""

    def __init__(self, client: httpx.Client, conversation_id: str, customer_id: str) -> None:
        self.client = client
        self.conversation_id = conversation_id
        self.customer_id = customer_id

    def send(self, text: str, action_reply: dict[str, Any] | None = None) -> tuple[dict[str, Any], float]:
        """The reply (MessageReply as JSON) and the seconds it took. Raises httpx.HTTPStatusError on a
        problem answer and httpx.TimeoutException when none came."""
        body: dict[str, Any] = {"text": text[:4000], "customer": {"tenant_id": SHOP_TENANT,
                                                                 "customer_id": self.customer_id}}
        if action_reply is not None:
            body["action_reply"] = action_reply
        started = time.perf_counter()
        response = self.client.post(f"/v1/conversations/{self.conversation_id}/messages", json=body)
        elapsed = time.perf_counter() - started
        response.raise_for_status()
        reply: dict[str, Any] = response.json()
        return reply, elapsed


def paged(client: httpx.Client, path: str, field: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    """Every item of a paged list endpoint of the gateway (next_page_token)."""
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        response = client.get(path, params={**params, "page_token": token})
        response.raise_for_status()
        body = response.json()
        items += body[field]
        token = body.get("next_page_token") or ""
        if not token:
            return items


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100) by nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]
