"""`expertkit serve` under load: many concurrent clients with an API key, on 127.0.0.1 only.

A fresh workspace over the sample corpus (examples/corpus), one API key, and the real `expertkit serve`
command (a subprocess, the default model on llama-server with generate.parallel slots). Then, in one run:

1. baseline: one client asks the questions one after another (--baseline-requests), for the latency of
   an answer on an idle server;
2. load: --clients clients (asyncio, one connection each) ask for --minutes, bounded in count and time.
   A client that gets 429 waits the Retry-After it was given (the server's bounded queue is full: a
   deliberate answer, counted apart), then asks again. Every other non-200 answer is an error.

Reported: answers, deliberate 429s, errors, p50/p95 latency of answers (load and baseline, and their
ratio: a ratio holds on a noisy shared machine, an absolute time does not), answers per minute, found
share, and the server's settings. Streamed and non-streamed requests alternate.

With --fairness, two keys instead: a greedy one whose --clients clients ask without pause, and a quiet
one whose single client asks one question after another, on two servers side by side in one run: with
serve.per_key at its default (each key holds at most half of slots + queue; free slots go to the keys in
turn) and with per_key = slots + queue (one shared first-come queue, as before per-key admission).
Reported for each: the quiet key's answers, 429s and p50/p95 latency, and the greedy key's.

Run: .venv/bin/python benchmarks/serve_load.py [--clients 50] [--minutes 5] [--model NAME] [--parallel 2]
     [--queue 16] [--json benchmarks/results/serve_load.json]
     .venv/bin/python benchmarks/serve_load.py --fairness --clients 30 --minutes 2 --model smollm2-135m-instruct
     --json benchmarks/results/serve_fairness.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

from expertkit.models.llamacpp import free_port

ROOT = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What is the price in euros of the seal kit NP-4472?",
    "What torque is the impeller nut tightened to?",
    "How long is the warranty on the pumps?",
    "What does fault code E-17 mean?",
    "How often must the mechanical seal be inspected?",
    "Who won the football world cup in 2018?",  # not in the documents
    "What is the restocking fee for returned parts?",
    "Which service bulletin covers the bearing noise?",
]


def percentile(values: list[float], q: float) -> float:
    """The observation nearest the ``q`` quantile (0..1), ties to the even rank; nan when there is none."""
    return float(np.quantile(values, q, method="nearest")) if values else float("nan")


async def ask(http: httpx.AsyncClient, url: str, key: str, question: str, stream: bool) -> tuple[int, float, dict]:
    body = {"model": "expertkit", "messages": [{"role": "user", "content": question}], "stream": stream}
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    if not stream:
        r = await http.post(f"{url}/v1/chat/completions", json=body, headers=headers)
        info = r.json() if r.status_code == 200 else {"retry_after": r.headers.get("retry-after"), "error": r.text}
        return r.status_code, time.perf_counter() - started, info
    async with http.stream("POST", f"{url}/v1/chat/completions", json=body, headers=headers) as r:
        if r.status_code != 200:
            await r.aread()
            return r.status_code, 0.0, {"retry_after": r.headers.get("retry-after"), "error": r.text}
        last: dict = {}
        first = None
        async for line in r.aiter_lines():
            if line.startswith("data: {"):
                event = json.loads(line[6:])
                if first is None:
                    first = time.perf_counter() - started
                if "error" in event:
                    return 599, time.perf_counter() - started, event
                last = event
        if not last.get("choices") or not last["choices"][0].get("finish_reason"):
            return 597, time.perf_counter() - started, {"error": "the stream ended without a finish_reason"}
        last["first_event_s"] = first
        return 200, time.perf_counter() - started, last


async def load(url: str, key: str, clients: int, seconds: float, max_requests: int) -> dict:
    results: list[tuple[int, float, dict]] = []
    deadline = time.monotonic() + seconds
    sent = 0

    async def client(i: int) -> None:
        nonlocal sent
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(timeout=600, limits=limits) as http:
            n = i
            while time.monotonic() < deadline and sent < max_requests:
                sent += 1
                try:
                    status, seconds_, info = await ask(http, url, key, QUESTIONS[n % len(QUESTIONS)], n % 2 == 0)
                except httpx.HTTPError as exc:
                    status, seconds_, info = 598, 0.0, {"error": repr(exc)}
                results.append((status, seconds_, info))
                n += 1
                if status == 429:
                    wait = float(info.get("retry_after") or 1)
                    await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

    started = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(clients)))
    elapsed = time.monotonic() - started
    ok = [r for r in results if r[0] == 200]
    latencies = [r[1] for r in ok]
    found = [r for r in ok if (r[2].get("expertkit") or {}).get("found")]
    errors = [r for r in results if r[0] not in (200, 429)]
    return {
        "requests": len(results),
        "answers": len(ok),
        "deliberate_429": sum(r[0] == 429 for r in results),
        "errors": len(errors),
        "error_samples": [str(r[2])[:200] for r in errors[:3]],
        "p50_s": round(percentile(latencies, 0.5), 2),
        "p95_s": round(percentile(latencies, 0.95), 2),
        "answers_per_min": round(len(ok) / (elapsed / 60), 1),
        "found_share": round(len(found) / len(ok), 3) if ok else 0.0,
        "elapsed_s": round(elapsed, 1),
    }


def start_server(
    args, ws: Path, names: tuple[str, ...] = ("load",), sets: tuple[str, ...] = ()
) -> tuple[subprocess.Popen, str, dict[str, str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    cli = [sys.executable, "-m", "expertkit.cli"]
    subprocess.run([*cli, "init", str(ws)], check=True, env=env, capture_output=True)
    subprocess.run([*cli, "ingest", str(ROOT / "examples" / "corpus"), "-w", str(ws)], check=True, env=env)
    keys = {
        name: subprocess.run(
            [*cli, "keys", "add", name, "-g", "everyone", "-w", str(ws)], check=True, env=env, capture_output=True,
            text=True,
        ).stdout.strip()
        for name in names
    }  # fmt: skip
    key = next(iter(keys.values()))
    port = free_port()
    sets = [f"generate.parallel={args.parallel}", f"serve.queue={args.queue}", *sets]
    if args.model:
        sets.append(f"generate.model={args.model}")
    log = open(ws / "serve.log", "w")  # noqa: SIM115 - lives as long as the server
    server = subprocess.Popen(
        [*cli, "serve", "-w", str(ws), "--port", str(port), *(a for s in sets for a in ("--set", s))],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 600
    while time.time() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"expertkit serve exited: {(ws / 'serve.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}, timeout=2).status_code == 200:
                return server, url, keys
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit("expertkit serve did not start within 10 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--max-requests", type=int, default=20_000, help="bound on requests in the load phase")
    parser.add_argument("--baseline-requests", type=int, default=8)
    parser.add_argument("--model", default="", help="generate.model (default: the workspace default)")
    parser.add_argument("--parallel", type=int, default=2, help="llama-server slots (generate.parallel)")
    parser.add_argument("--queue", type=int, default=16, help="serve.queue: waiting requests before 429")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--fairness", action="store_true", help="a greedy key beside a quiet one, per_key on/off")
    args = parser.parse_args()
    if args.fairness:
        return fairness(args)

    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        server, url, keys = start_server(args, Path(tmp) / "ws")
        key = keys["load"]
        try:
            model = httpx.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
            print(f"server up: {url}, models {[m['id'] for m in model]}", flush=True)
            baseline = asyncio.run(load(url, key, 1, 3600, args.baseline_requests))
            print(f"baseline (1 client): {json.dumps(baseline)}", flush=True)
            loaded = asyncio.run(load(url, key, args.clients, args.minutes * 60, args.max_requests))
            print(f"load ({args.clients} clients): {json.dumps(loaded)}", flush=True)
        finally:
            server.terminate()
            server.wait(timeout=60)
    result = {
        "model": args.model or "default (generate.model)",
        "clients": args.clients,
        "minutes": args.minutes,
        "parallel": args.parallel,
        "queue": args.queue,
        "baseline": baseline,
        "load": loaded,
        "p50_ratio_load_over_alone": round(loaded["p50_s"] / baseline["p50_s"], 2) if baseline["p50_s"] else None,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"\n{args.clients} clients × {args.minutes:g} min: {loaded['answers']} answers "
        f"({loaded['answers_per_min']}/min), {loaded['deliberate_429']} deliberate 429s, {loaded['errors']} errors; "
        f"p50 {loaded['p50_s']} s, p95 {loaded['p95_s']} s (alone: p50 {baseline['p50_s']} s)"
    )


async def side_by_side(args, url: str, keys: dict[str, str]) -> list[dict]:
    seconds = args.minutes * 60
    return await asyncio.gather(
        load(url, keys["greedy"], args.clients, seconds, args.max_requests),
        load(url, keys["quiet"], 1, seconds, args.max_requests),
    )


def fairness(args) -> None:
    """The greedy key's burst beside the quiet key's one-at-a-time questions, per_key on and off."""
    shared = args.parallel + args.queue  # per_key this high: any key may take every place
    runs: dict[str, dict] = {}
    for label, per_key in (("per_key default (round robin)", 0), ("one shared queue", shared)):
        with tempfile.TemporaryDirectory(prefix="serve-fair-") as tmp:
            server, url, keys = start_server(args, Path(tmp) / "ws", ("greedy", "quiet"), (f"serve.per_key={per_key}",))
            try:
                greedy, quiet = asyncio.run(side_by_side(args, url, keys))
            finally:
                server.terminate()
                server.wait(timeout=60)
        runs[label] = {"per_key": per_key, "quiet": quiet, "greedy": greedy}
        print(f"{label}: quiet {json.dumps(quiet)}\n  greedy {json.dumps(greedy)}", flush=True)
    result = {"model": args.model or "default (generate.model)", "greedy_clients": args.clients,
              "minutes": args.minutes, "parallel": args.parallel, "queue": args.queue, "runs": runs}  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    print("\n| | quiet key: answers | quiet 429s | quiet p50 | quiet p95 | greedy answers | greedy 429s |")
    print("|---|---|---|---|---|---|---|")
    for label, r in runs.items():
        q, g = r["quiet"], r["greedy"]
        print(f"| {label} | {q['answers']} | {q['deliberate_429']} | {q['p50_s']} s | {q['p95_s']} s | "
              f"{g['answers']} | {g['deliberate_429']} |")  # fmt: skip


if __name__ == "__main__":
    main()
