"""llama.cpp's own HTTP server from the ``xllamacpp`` wheel, run as a process that takes ``llama-server``'s
arguments (the subset expertkit passes), so the runtime starts, watches and stops it like any llama-server.

    python -m expertkit.models.xllamacpp_server --model M.gguf --host 127.0.0.1 --port 8080 ...

The wheel is llama.cpp compiled for x86-64 with AVX2/FMA/F16C (no AVX-512, no AMX), so it runs on any
CPU of the last decade; ``--version`` prints the build and the CPU features it uses, and exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="xllamacpp-server", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="store_true", help="print the build and CPU features, then exit")
    p.add_argument("--model", "-m")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ctx-size", "-c", type=int, default=4096, help="all slots together, as llama-server")
    p.add_argument("--parallel", "-np", type=int, default=1)
    p.add_argument("--threads", "-t", type=int, default=0)
    p.add_argument("--n-gpu-layers", "-ngl", type=int, default=0)
    p.add_argument("--jinja", action="store_true")
    p.add_argument("--no-webui", action="store_true")
    p.add_argument("--lora", action="append", default=[])
    p.add_argument("--lora-init-without-apply", action="store_true")
    p.add_argument("--api-key-file", help="a file of keys, one a line, as llama-server: requests carry one")
    p.add_argument(
        "--cors-origins",
        default=os.environ.get("LLAMA_ARG_CORS_ORIGINS", ""),
        help="the origins browsers may read answers from (LLAMA_ARG_CORS_ORIGINS too); empty = llama.cpp's '*'",
    )
    args = p.parse_args(argv)
    if not args.version and not args.model:
        p.error("--model is required")
    return args


def params_for(args: argparse.Namespace):
    """The xllamacpp CommonParams that match llama-server started with ``args``."""
    import xllamacpp

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.hostnames = [args.host]
    params.port = args.port
    params.n_ctx = args.ctx_size
    params.n_parallel = args.parallel
    params.kv_unified = False  # llama-server's behaviour with an explicit --parallel: ctx split per slot
    if args.threads > 0:
        params.cpuparams.n_threads = args.threads
        params.cpuparams_batch.n_threads = args.threads
    params.n_gpu_layers = args.n_gpu_layers
    params.use_jinja = args.jinja
    params.ui = not args.no_webui
    params.endpoint_slots = True
    params.lora_adapters = [xllamacpp.CommonAdapterLoraInfo(path, 1.0) for path in args.lora]
    params.lora_init_without_apply = args.lora_init_without_apply
    if args.api_key_file:
        with open(args.api_key_file) as f:
            params.api_keys = [line.strip() for line in f if line.strip()]
    if args.cors_origins:
        params.cors_origins = args.cors_origins
    return params


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import xllamacpp

    if args.version:
        print(f"xllamacpp {xllamacpp.__version__} (llama.cpp)")
        print(xllamacpp.get_system_info().strip())
        return 0
    for sig in (signal.SIGTERM, signal.SIGINT):
        # the kernel's default (die at once), not a Python handler: Python runs handlers only between bytecodes,
        # so one would wait for the model to load; and the server's destructor waits for a loop nobody stops
        signal.signal(sig, signal.SIG_DFL)
    server = xllamacpp.Server(params_for(args))  # loads the model and starts the HTTP threads
    print(f"main: server is listening on {server.listening_address}", flush=True)
    threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
