"""What this machine has: the CPU (name, feature flags, cores) and a free local port.

One place for what several parts ask the operating system: the engine choice and `doctor` (flags), the generator
and training (native bf16, AMX), llama-server (physical cores, a port) and the PostgreSQL server (a port).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import platform
import socket
from pathlib import Path


def _cpuinfo(*keys: str) -> str | None:
    """The first /proc/cpuinfo value under one of ``keys``; None where there is none (macOS, Windows)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in keys:
                return value.strip()
    return None


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux names them (``flags`` on x86, ``Features`` on ARM); empty where
    they cannot be read."""
    return set((_cpuinfo("flags", "Features") or "").split())


def cpu_name() -> str:
    return _cpuinfo("model name", "Model", "CPU part") or platform.processor() or platform.machine()


def cpu_key() -> str:
    """One CPU class: its name and feature flags (a VM that hides AVX-512 on the same chip is another)."""
    text = f"{platform.machine()}|{cpu_name()}|{' '.join(sorted(cpu_flags()))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cpu_has_native_bf16() -> bool:
    """True where the CPU computes bf16 natively (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def cpu_has_amx() -> bool:
    """True where the CPU has AMX tiles for bf16 matrix products (Sapphire Rapids and later)."""
    return "amx_bf16" in cpu_flags()


def physical_cores() -> int:
    """Cores this process may use, counting SMT siblings once: llama.cpp decodes slower with hyperthreads."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores = set()
    for cpu in allowed:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (a server started right after binds it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
