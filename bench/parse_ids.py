"""Benchmark parsing the IDs box: a million IDs, as text and as a list, against a baseline.

The baseline is the least any parser must do: split the text and ``int()`` each piece,
then drop duplicates keeping order. ``parse_ids`` also validates each ID (positive, in
range, nothing but digits and separators) and names the bad piece. Target: a million IDs
in under 1 s, within 2x of the baseline.

    .venv/bin/python bench/parse_ids.py [--ids 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import re
import time

from selective_sync.sync.keys import parse_ids


def baseline(given: str | list[int]) -> list[int]:
    pieces = given if isinstance(given, list) else re.split(r"[\s,]+", given.strip())
    return list(dict.fromkeys(int(p) for p in pieces))


def best(fn, given, repeat: int) -> float:
    timings = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn(given)
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    as_list = list(range(1, args.ids + 1))
    text = "\n".join(map(str, as_list))
    assert parse_ids(text) == baseline(text) == as_list
    print(f"{args.ids:,} IDs, best of {args.repeat}")
    print(f"{'input':<6} {'parse_ids':>10} {'baseline':>10} {'ratio':>7}")
    for label, given in (("text", text), ("list", as_list)):
        ours, base = best(parse_ids, given, args.repeat), best(baseline, given, args.repeat)
        print(f"{label:<6} {ours:>9.3f}s {base:>9.3f}s {ours / base:>6.2f}x")


if __name__ == "__main__":
    main()
