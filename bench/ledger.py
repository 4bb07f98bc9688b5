"""Benchmark what the sync ledger costs the sync core: the same batch with and without it.

    .venv/bin/python bench/ledger.py [--keys 10000] [--persons 12000] [--rounds 3]
                                     [--district-url U --state-url U]

(server databases must exist: e.g. ``createdb ledger_bench_d``; their demo rows are replaced)

Builds a demo (SQLite files in bench/out/ledger-<persons>, or on the given servers), then
alternates, ``--rounds`` times each, ``sync_keys`` over ``--keys`` PersonIdentity keys in
batches of 1,250 (as the flow's batch tasks) with no ledger and with a ``KeyRecorder``
(every written key's outcome row in its own transaction, the others batched). Before every
run each key's current identity is changed at the district with a new marker, so every
run writes every key (the baseline and the ledger run do the same work on the data). One
process, one machine, alternating: the ratio is ledger / no ledger. Target (issue 15): the
sync within 20% of the sync without the ledger.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from pathlib import Path

from sqlalchemy import bindparam, text

from selective_sync.db import make_engine, mask_url
from selective_sync.demo import generate_demo
from selective_sync.ledger import KeyRecorder
from selective_sync.sync import RetryPolicy, sync_keys

ROOT = Path(__file__).resolve().parent.parent
BATCH = 1250


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--persons", type=int, default=12_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--district-url")
    parser.add_argument("--state-url")
    return parser.parse_args()


def drift(district, keys: list[int], marker: str) -> None:
    """Change every key's current identity at the district (a new middle name)."""
    update = text(
        "UPDATE identity SET middle_name = :m WHERE identity_id IN "
        "(SELECT current_identity_id FROM person WHERE person_id IN :keys)"
    ).bindparams(bindparam("keys", expanding=True))
    with district.begin() as conn:
        for start in range(0, len(keys), 500):
            conn.execute(update, {"m": marker, "keys": keys[start : start + 500]})


def one_run(district, state, number: int, keys: list[int], ledger: bool) -> tuple[float, int]:
    drift(district, keys, f"M{uuid.uuid4().hex[:8]}")
    recorder_id = str(uuid.uuid4())
    written = 0
    started = time.perf_counter()
    for start in range(0, len(keys), BATCH):
        outcomes = sync_keys(
            district,
            state,
            "PersonIdentity",
            number,
            keys[start : start + BATCH],
            retry=RetryPolicy(),
            recorder=KeyRecorder(recorder_id) if ledger else None,
        )
        written += sum(o.outcome.value == "synced" for o in outcomes)
    return time.perf_counter() - started, written


def main() -> None:
    args = parse_args()
    folder = ROOT / "bench" / "out" / f"ledger-{args.persons}"
    folder.mkdir(parents=True, exist_ok=True)
    manifest = generate_demo(
        folder,
        persons=args.persons,
        seed=7,
        district_url=args.district_url,
        state_url=args.state_url,
    )
    district = make_engine(args.district_url or f"sqlite:///{folder / 'district.db'}")
    state = make_engine(args.state_url or f"sqlite:///{folder / 'state.db'}")
    refused = {k for keys in manifest.will_fail["PersonIdentity"].values() for k in keys}
    with district.connect() as conn:
        present = [r[0] for r in conn.execute(text("SELECT person_id FROM person ORDER BY 1"))]
    keys = [k for k in present if k not in refused][: args.keys]
    print(f"state {mask_url(str(state.url))}, {len(keys):,} keys, batches of {BATCH:,}")
    print(f"load average at start {os.getloadavg()[0]:.2f}")
    times: dict[bool, list[float]] = {False: [], True: []}
    for round_number in range(1, args.rounds + 1):
        for ledger in (False, True):
            seconds, written = one_run(district, state, manifest.district_number, keys, ledger)
            times[ledger].append(seconds)
            label = "with ledger   " if ledger else "without ledger"
            print(f"round {round_number} {label} {seconds:7.2f} s  ({written:,} keys written)")
    without, with_ = (statistics.median(times[k]) for k in (False, True))
    print(f"median without {without:.2f} s, with {with_:.2f} s: ratio {with_ / without:.2f}")
    best = min(times[True]) / min(times[False])
    print(f"best of {args.rounds}: ratio {best:.2f} (target <= 1.20)")
    print(f"load average at end {os.getloadavg()[0]:.2f}")
    district.dispose()
    state.dispose()


if __name__ == "__main__":
    main()
