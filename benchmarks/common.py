"""Helpers shared by the benchmark scripts: the machine description and result files."""

from __future__ import annotations

import json
import os
import platform
import re

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def result_path(name: str) -> str:
    """Default JSON path of a benchmark's result (``benchmarks/results/<name>.json``)."""
    return os.path.join(RESULTS_DIR, name + ".json")


def machine(**versions) -> dict:
    """The machine the figures were measured on, plus library ``versions`` to record."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = None
    return {"cpu_count": os.cpu_count(), "usable_cpus": usable,
            "platform": platform.platform(), "processor": platform.processor(),
            "python": platform.python_version(), **versions}


def rss_mb(pid: int) -> float:
    """Resident memory of process ``pid`` in MB (``/proc/PID/status`` VmRSS; Linux)."""
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) / 1024


def write_result(path: str, result: dict) -> None:
    """Writes a result as indented JSON, creating the folder."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")


def print_result(result: dict) -> None:
    """Prints a result's fields, one per line, without the machine description."""
    for k, v in result.items():
        if k != "machine":
            print(f"{k}: {v}")


def best(runs: list[dict], key: str, higher_is_better: bool) -> dict:
    """The best of repeated measurements, with every run's ``key`` under ``all_<key>``."""
    pick = max if higher_is_better else min
    out = dict(pick(runs, key=lambda r: r[key]))
    out[f"all_{key}"] = [r[key] for r in runs]
    return out
