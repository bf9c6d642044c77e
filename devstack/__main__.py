"""`python -m devstack`: start the whole mesh on embedded defaults and wait for Ctrl+C."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from devstack.processes import stop_on_signals
from devstack.stack import Stack, StackConfig, StackError


def _say(text: str, error: bool = False) -> None:
    """Print, unless the terminal is gone (SIGHUP): stopping must not fail on a closed tty."""
    try:
        print(text, file=sys.stderr if error else sys.stdout, flush=True)
    except OSError:
        pass


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack", description=__doc__)
    parser.add_argument("--data-dir", type=Path, default=StackConfig.data_dir, help="state, models and logs")
    parser.add_argument("--gateway-port", type=int, default=8080)
    parser.add_argument("--llm-port", type=int, default=StackConfig.llm_port)
    parser.add_argument("--service-ports", default=",".join(map(str, StackConfig.service_ports)),
                        help="ports of retrieval, triage, escalation, outreach, concierge (comma-separated)")
    parser.add_argument("--actions-port", type=int, default=50056)
    parser.add_argument("--demoshop-port", type=int, default=8090, help="the demo company's back office")
    parser.add_argument("--shop-data", type=Path, default=StackConfig.shop_data,
                        help="the τ-bench retail data (demoshop's records, the shop tenant's policy)")
    parser.add_argument("--llm-base-url", default=None,
                        help="use this OpenAI-compatible server (e.g. vLLM) instead of the embedded one")
    parser.add_argument("--llm-model", default=StackConfig.llm_model)
    parser.add_argument("--trace-ui", action="store_true",
                        help="also start Arize Phoenix as a local trace backend and UI (make trace-ui-install)")
    args = parser.parse_args()
    config = StackConfig(
        data_dir=args.data_dir.resolve(), gateway_port=args.gateway_port, llm_port=args.llm_port,
        service_ports=tuple(int(port) for port in args.service_ports.split(",")),
        llm_base_url=args.llm_base_url, llm_model=args.llm_model, trace_ui=args.trace_ui,
        actions_port=args.actions_port, demoshop_port=args.demoshop_port, shop_data=args.shop_data.resolve(),
    )
    stack = Stack(config)
    started = time.monotonic()
    print(f"starting aftercare (logs in {stack.log_dir}) ...", flush=True)
    # SIGTERM and SIGHUP (the terminal closed) behave like Ctrl+C: stop every process in order.
    # Should this process be killed instead, its children get SIGTERM from the kernel.
    stop_on_signals()
    try:
        stack.start()
        lines = [
            f"\naftercare is ready in {time.monotonic() - started:.1f}s",
            f"  gateway   {stack.gateway_url}   (OpenAPI: {stack.gateway_url}/docs)",
            f"  console   {stack.gateway_url}/console/   (paste a key below)",
            f"  tenant {config.demo_tenant} (Beacon, a SaaS product's support):",
            *(f"  {role:<9} key {key}" for role, key in stack.api_keys.items()),
        ]
        if stack.shop_keys:
            lines += [
                f"  tenant {config.shop_tenant} (the τ-bench retail store; its back office: {stack.demoshop_url}, "
                f"token {stack.demoshop_token}):",
                *(f"  {role:<9} key {key}" for role, key in stack.shop_keys.items()),
            ]
        lines += [f"  note:     {note}" for note in stack.notes]
        if config.trace_ui:
            lines.append(f"  traces    {stack.trace_ui_url}   (Arize Phoenix: search a response's trace_id)")
        lines += [
            f"  try:      curl -s {stack.gateway_url}/v1/conversations/c1/messages "
            f"-H 'authorization: Bearer {stack.api_keys.get('channel', '')}' "
            "-H 'content-type: application/json' "
            "-d '{\"text\": \"How do I turn on two-factor authentication?\", \"customer\": {\"tenant_id\": \"demo\", "
            "\"customer_id\": \"cust-1\"}}'",
            "  Ctrl+C stops everything.",
        ]
        _say("\n".join(lines))
        # Supervise: a process that dies is started again (its clients reconnect by themselves).
        while True:
            for name in stack.supervise():
                _say(f"{name} exited; restarted it (see {stack.log_dir / name}.log)", error=True)
            time.sleep(0.5)
    except KeyboardInterrupt:
        _say("\nstopping ...")
        return 0
    except StackError as error:
        _say(f"error: {error}", error=True)
        return 1
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
