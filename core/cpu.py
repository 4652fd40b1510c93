"""What this CPU can do, read from the flags Linux lists in /proc/cpuinfo (none elsewhere, which
reads as "nothing special")."""
from __future__ import annotations

import os
from functools import lru_cache


def _cpuinfo(field: str) -> str | None:
    """The value of the first `field:` line of /proc/cpuinfo (the first CPU's), None where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    return frozenset((_cpuinfo("flags") or "").split())


def cpu_model() -> str:
    return _cpuinfo("model name") or "unknown"


def has_native_bf16(flags: frozenset[str] | None = None) -> bool:
    """AVX512-BF16 or AMX: bf16 computed in hardware (emulated bf16 is slower than fp32)."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))


def has_amx(flags: frozenset[str] | None = None) -> bool:
    """Intel's matrix units (Sapphire Rapids and later), which OpenVINO uses for bf16 and int8."""
    return "amx_bf16" in (cpu_flags() if flags is None else flags)


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity where Linux sets one (taskset, cpusets), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity outside Linux
        return os.cpu_count() or 1
