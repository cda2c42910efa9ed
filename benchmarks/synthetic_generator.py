"""Benchmark: events per second of the synthetic world generator.

Claim measured: the vectorised synthetic generator (:mod:`ppm.data.synthetic`) produces at least
one million events in under a minute on a 2-core machine.

Two figures are reported, each the best of ``--repeats`` runs:

(a) the event simulation alone: ``build_world`` + ``behaviour.simulate`` (the vectorised NumPy
    part), events and events/s;
(b) the full ``generate()``: the simulation plus item pictures (drawing and PNG encoding),
    titles, search queries and Parquet writing, into a temporary folder deleted afterwards.

The claim is checked against (b), the end-to-end figure a user waits for: the JSON field
``meets_1m_events_per_minute`` is true when (b) ran at >= 1,000,000 / 60 events/s. The machine
(``os.cpu_count()``, platform) is recorded, since the claim is about a 2-core machine. This is a
benchmark, not a test: nothing is asserted.

Run (from the repository root)::

    .venv/bin/python benchmarks/synthetic_generator.py                 # --scale small, ~1M events
    .venv/bin/python benchmarks/synthetic_generator.py --scale demo --repeats 3
    .venv/bin/python benchmarks/synthetic_generator.py --profile 25    # + cProfile hot spots

The result is written to ``benchmarks/results/synthetic_generator.json``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import sys
import tempfile
import time

import common
import numpy as np

from ppm.data import synthetic
from ppm.data.synthetic import behaviour
from ppm.data.synthetic.world import SCALES, build_world

NAME = "synthetic_generator"
TARGET_EVENTS = 1_000_000
TARGET_SECONDS = 60.0


def events_rng(seed: int) -> np.random.Generator:
    """The same event RNG that ``generate()`` uses, so (a) simulates the same events as (b)."""
    return np.random.default_rng(np.random.SeedSequence([seed, 1]).spawn(3)[1])


def time_simulation(scale: str, seed: int) -> dict:
    """(a) build_world + behaviour.simulate."""
    t0 = time.perf_counter()
    world = build_world(SCALES[scale], seed)
    t1 = time.perf_counter()
    ev = behaviour.simulate(world, events_rng(seed))
    t2 = time.perf_counter()
    events = len(ev["item"])
    return {"events": events, "seconds": t2 - t0, "build_world_seconds": t1 - t0,
            "simulate_seconds": t2 - t1, "events_per_s": events / (t2 - t0)}


def time_generate(scale: str, seed: int, profile: int = 0) -> dict:
    """(b) the full generate() into a temporary folder (deleted afterwards)."""
    tmp = tempfile.mkdtemp(prefix="ppm_bench_gen_")
    try:
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        meta = synthetic.generate(tmp, scale=scale, seed=seed, progress=False,
                                  with_queries=True)
        if prof:
            prof.disable()
        seconds = time.perf_counter() - t0
        sizes = {f: os.path.getsize(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp))}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    events = int(meta.counts["events"])
    out = {"events": events, "seconds": seconds, "events_per_s": events / seconds,
           "counts": dict(meta.counts), "file_bytes": sizes}
    if prof:
        out["profile"] = hot_spots(prof, profile)
    return out


def hot_spots(prof: cProfile.Profile, top: int) -> dict:
    """The top functions by cumulative and by own time, as text (also printed)."""
    texts = {}
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).strip_dirs().sort_stats(key).print_stats(top)
        texts[key] = buf.getvalue()
    return texts


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the synthetic generator's events/s: the vectorised simulation "
        "alone and the full generate() (pictures, PNGs, queries, Parquet), and check the claim "
        "'>= 1M events in under a minute on a 2-core machine'.")
    parser.add_argument("--scale", default="small", choices=sorted(SCALES),
                        help="World size (default: small, ~1.07M events).")
    parser.add_argument("--seed", type=int, default=0, help="Random seed (default: 0).")
    parser.add_argument("--repeats", type=int, default=1,
                        help="Runs of each measurement; the fastest is reported (default: 1).")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="Also profile the last full generate() with cProfile and print the "
                        "top N functions (default: 0, off). Profiling slows the run; the "
                        "profiled run is not counted in the timings.")
    parser.add_argument("--out", default=common.result_path(NAME),
                        help=f"Result JSON path (default: benchmarks/results/{NAME}.json).")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    print(f"Synthetic generator benchmark: scale={args.scale} seed={args.seed} "
          f"repeats={args.repeats}", flush=True)
    sim = common.best([time_simulation(args.scale, args.seed) for _ in range(args.repeats)],
                      "seconds", False)
    print(f"(a) simulation   {sim['events']:>10,} events in {sim['seconds']:7.2f} s "
          f"= {sim['events_per_s']:>10,.0f} events/s  (build_world "
          f"{sim['build_world_seconds']:.2f} s, simulate {sim['simulate_seconds']:.2f} s)",
          flush=True)
    full = common.best([time_generate(args.scale, args.seed) for _ in range(args.repeats)],
                       "seconds", False)
    print(f"(b) generate()   {full['events']:>10,} events in {full['seconds']:7.2f} s "
          f"= {full['events_per_s']:>10,.0f} events/s", flush=True)
    if sim["events"] != full["events"]:
        print(f"  note: (a) and (b) simulated different event counts ({sim['events']} vs "
              f"{full['events']})", file=sys.stderr)

    target_rate = TARGET_EVENTS / TARGET_SECONDS
    meets = full["events_per_s"] >= target_rate
    seconds_per_1m = TARGET_EVENTS / full["events_per_s"]
    mach = common.machine(numpy=np.__version__)
    result = {
        "benchmark": NAME,
        "claim": ">= 1M events generated in under a minute on a 2-core machine",
        "scale": args.scale, "seed": args.seed, "repeats": args.repeats,
        "machine": mach,
        "simulation": sim,
        "generate": full,
        "seconds_per_1m_events": seconds_per_1m,
        "simulation_share_of_generate": sim["seconds"] / full["seconds"],
        "meets_1m_events_per_minute": bool(meets),
        "measured_on_2_cores": mach["cpu_count"] == 2,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if args.profile:
        prof = time_generate(args.scale, args.seed, profile=args.profile)
        result["profile"] = prof["profile"]
        print("\ncProfile of generate(), by cumulative time:\n" + prof["profile"]["cumulative"])
        print("cProfile of generate(), by own time:\n" + prof["profile"]["tottime"])

    common.write_result(args.out, result)

    print(f"Machine: {mach['cpu_count']} CPUs ({mach['usable_cpus']} usable), "
          f"{mach['platform']}")
    print(f"Simulation is {result['simulation_share_of_generate']:.0%} of generate(); "
          f"1M events take {seconds_per_1m:.1f} s end to end.")
    print(f"Claim '>= 1M events in under a minute': "
          f"{'MET' if meets else 'NOT MET'} ({full['events_per_s']:,.0f} events/s vs "
          f"{target_rate:,.0f} needed)"
          + ("" if mach["cpu_count"] == 2 else f" [measured on {mach['cpu_count']} CPUs]"))
    print(f"Result written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
