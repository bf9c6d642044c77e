"""LLM serving throughput: an OpenAI-compatible server (vLLM in production,
the embedded llama.cpp server locally) against plain transformers `generate`
on the same weights.

    # the server, through the concierge's own client (servicekit.llm.LlmClient):
    python bench/llm_throughput.py --base-url http://127.0.0.1:8000/v1 --model google/gemma-3-270m-it \\
        --concurrency 1,4,16,64 --requests 64 --max-tokens 128 --json vllm.json
    # and transformers generate on the same weights, batched, on the GPU:
    python bench/llm_throughput.py --transformers google/gemma-3-270m-it --device cuda \\
        --concurrency 1,4,16,64 --max-tokens 128 --json hf.json
    # both in one run; the JSON then carries the speed-up at the best level of each:
    python bench/llm_throughput.py --base-url ... --model M --transformers PATH --json both.json

Server side: at each concurrency level, `--requests` streamed completions are
sent with that many in flight; output tokens/s is all generated tokens over
the wall time of the level; time to first token and full latency per request
(p50/p95). Generation length is fixed (`ignore_eos`, which vLLM honours; other
servers may stop earlier and the table shows the tokens actually generated).
GPU memory comes from nvidia-smi when the server runs on this machine.

transformers side: the same prompts, `generate` with batch size = the
concurrency level, greedy, exactly --max-tokens new tokens; time to first
token is a 1-token `generate` of the batch; GPU memory is torch's peak.

Prompts are grounded-answer prompts of the concierge's size over passages of `--corpus`
(JSONL with title/text; the E-Manual corpus, for example), else a fixed text.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from servicekit.llm import Completion, LlmClient, LlmUnavailable
from servicekit.logging import configure_logging
from services.concierge import prompts

FALLBACK_PASSAGES = [
    ("Pairing the remote", "Point the remote at the TV and hold the Return and Play buttons for 3 seconds to pair it."),
    ("Ambient Mode", "Ambient Mode shows pictures, the time and the weather while the TV screen is otherwise off."),
    ("Software update", "Open Settings, then Support, then Software Update, and select Update Now to install it."),
]


def _passages_prompt(question: str, passages: list[tuple[str, str]]) -> str:
    """A grounded-answer prompt of the concierge's size: numbered passages, then the question."""
    context = "\n".join(
        f"[{i}] {title}: {' '.join(text.split())[: prompts.MAX_PASSAGE_CHARS]}"
        for i, (title, text) in enumerate(passages, start=1)
    )
    return f"Answer the question from the passages.\n\n{context}\n\nQuestion: {question}\nAnswer:"


def make_prompts(count: int, corpus: Path | None, seed: int = 7) -> list[str]:
    passages = FALLBACK_PASSAGES
    if corpus is not None:
        rows = [json.loads(line) for line in corpus.read_text().splitlines() if line.strip()]
        passages = [(r["title"], r["text"]) for r in rows if r.get("text", "").strip()]
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        chosen = rng.sample(passages, k=min(3, len(passages)))
        question = f"How do I use {chosen[0][0].lower()}?"
        made.append(_passages_prompt(question, chosen))
    return made


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1) if ordered else 0.0


def gpu_memory_used_mib() -> float | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
        return float(sum(float(line) for line in out.split()))
    except (subprocess.SubprocessError, ValueError, OSError):
        return None


async def server_level(
    client: LlmClient, prompt_list: list[str], concurrency: int, max_tokens: int, chat: bool
) -> dict[str, Any]:
    queue = list(enumerate(prompt_list))
    results: list[Completion] = []
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while queue:
            _, prompt = queue.pop()
            try:
                if chat:
                    completion = await client.chat(
                        [{"role": "user", "content": prompt}], max_tokens=max_tokens,
                        extra_body={"ignore_eos": True},
                    )
                else:
                    completion = await client.complete(
                        prompt, max_tokens=max_tokens, stop=[], extra_body={"ignore_eos": True}
                    )
                results.append(completion)
            except LlmUnavailable:
                failures += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    tokens = sum(c.completion_tokens for c in results)
    return {
        "concurrency": concurrency,
        "requests": len(results),
        "failures": failures,
        "output_tokens": tokens,
        "mean_output_tokens": round(tokens / len(results), 1) if results else 0.0,
        "wall_s": round(wall, 3),
        "output_tokens_per_s": round(tokens / wall, 1) if wall else 0.0,
        "ttft_p50_ms": pct([c.time_to_first_token_s * 1000 for c in results], 0.5),
        "ttft_p95_ms": pct([c.time_to_first_token_s * 1000 for c in results], 0.95),
        "latency_p50_ms": pct([c.latency_s * 1000 for c in results], 0.5),
        "latency_p95_ms": pct([c.latency_s * 1000 for c in results], 0.95),
        "gpu_memory_used_mib": gpu_memory_used_mib(),
    }


async def bench_server(args: argparse.Namespace, prompt_list: list[str]) -> list[dict[str, Any]]:
    client = LlmClient(args.base_url, args.model, api_key=args.api_key, timeout_s=args.timeout_s)
    try:
        await client.complete(prompt_list[0], max_tokens=1, stop=[])  # warm-up: load, compile, cache
        levels = []
        for concurrency in args.concurrency:
            count = max(args.requests, concurrency)
            level = await server_level(client, (prompt_list * count)[:count], concurrency, args.max_tokens, args.chat)
            print(f"  server c={concurrency}: {level['output_tokens_per_s']} tok/s, "
                  f"TTFT p50 {level['ttft_p50_ms']} ms", file=sys.stderr)
            levels.append(level)
        return levels
    finally:
        await client.aclose()


def bench_transformers(args: argparse.Namespace, prompt_list: list[str]) -> list[dict[str, Any]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = args.device
    tokenizer = AutoTokenizer.from_pretrained(args.transformers)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = AutoModelForCausalLM.from_pretrained(args.transformers, torch_dtype=dtype).to(device).eval()

    def generate(batch: list[str], new_tokens: int) -> float:
        inputs = tokenizer(batch, return_tensors="pt", padding=True).to(device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        with torch.inference_mode():
            model.generate(**inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                           pad_token_id=tokenizer.pad_token_id)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    generate(prompt_list[:1], 2)  # warm-up
    levels = []
    for batch_size in args.concurrency:
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        batch = (prompt_list * batch_size)[:batch_size]
        ttft = generate(batch, 1)
        rounds = max(1, args.requests // batch_size) if args.transformers_rounds == 0 else args.transformers_rounds
        took = [generate(batch, args.max_tokens) for _ in range(rounds)]
        wall = sum(took)
        tokens = batch_size * args.max_tokens * rounds
        levels.append({
            "concurrency": batch_size,
            "requests": batch_size * rounds,
            "output_tokens": tokens,
            "wall_s": round(wall, 3),
            "output_tokens_per_s": round(tokens / wall, 1),
            "ttft_p50_ms": round(ttft * 1000, 1),
            "latency_p50_ms": round(statistics.median(took) * 1000, 1),
            "gpu_memory_peak_mib": (
                round(torch.cuda.max_memory_allocated() / 2**20, 1) if device.startswith("cuda") else None
            ),
        })
        print(f"  transformers batch={batch_size}: {levels[-1]['output_tokens_per_s']} tok/s", file=sys.stderr)
    return levels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="gemma-3-270m", help="model name the server serves")
    parser.add_argument("--api-key", default="")
    parser.add_argument("--chat", action="store_true", help="use /chat/completions (instruction-tuned models)")
    parser.add_argument("--transformers", help="model path or id for plain transformers generate")
    parser.add_argument("--device", default="cuda", help="device for transformers (cuda, cpu)")
    parser.add_argument("--transformers-rounds", type=int, default=0,
                        help="generate calls per batch size (0: --requests / batch size)")
    parser.add_argument("--concurrency", default="1,4,16,64",
                        type=lambda v: [int(x) for x in v.split(",") if x.strip()],
                        help="comma-separated concurrency levels (batch sizes for transformers)")
    parser.add_argument("--requests", type=int, default=64, help="requests per level (at least the concurrency)")
    parser.add_argument("--max-tokens", type=int, default=128, help="tokens generated per request")
    parser.add_argument("--corpus", type=Path, help="JSONL with title/text to build prompts from")
    parser.add_argument("--timeout-s", type=float, default=600.0, help="per-request timeout")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not args.base_url and not args.transformers:
        parser.error("give --base-url (a server), --transformers (a model), or both")
    configure_logging("llm-throughput", "console", "warning")
    prompt_list = make_prompts(max(args.requests, max(args.concurrency)), args.corpus)
    report: dict[str, Any] = {"max_tokens": args.max_tokens, "prompts": len(prompt_list)}
    if args.base_url:
        report["server"] = {"base_url": args.base_url, "model": args.model,
                            "levels": asyncio.run(bench_server(args, prompt_list))}
    if args.transformers:
        report["transformers"] = {"model": args.transformers, "device": args.device,
                                  "levels": bench_transformers(args, prompt_list)}
    if "server" in report and "transformers" in report:
        best_server = max(level["output_tokens_per_s"] for level in report["server"]["levels"])
        best_hf = max(level["output_tokens_per_s"] for level in report["transformers"]["levels"])
        report["speedup_best_vs_best"] = round(best_server / best_hf, 2) if best_hf else None
    print(f"{'engine':14} {'conc':>5} {'reqs':>5} {'tok/s':>9} {'TTFT p50':>9} {'TTFT p95':>9} "
          f"{'lat p50':>9} {'GPU MiB':>8}")
    for engine in ("server", "transformers"):
        for level in report.get(engine, {}).get("levels", []):
            memory = level.get("gpu_memory_used_mib") or level.get("gpu_memory_peak_mib")
            print(f"{engine:14} {level['concurrency']:5} {level['requests']:5} {level['output_tokens_per_s']:9} "
                  f"{level['ttft_p50_ms']:9} {level.get('ttft_p95_ms', ''):>9} {level['latency_p50_ms']:9} "
                  f"{memory if memory is not None else '-':>8}")
    if report.get("speedup_best_vs_best") is not None:
        print(f"speed-up, best server level vs best transformers batch: {report['speedup_best_vs_best']}x")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
