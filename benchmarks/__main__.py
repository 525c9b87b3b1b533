"""`make bench`: run every benchmark, one after another, each printing its own table.

    python -m benchmarks                 # all, at their default sizes
    python -m benchmarks --quick         # all, small sizes (a smoke run)
    python -m benchmarks resolver intake # some
Speed goals live here, never as timed assertions in tests.
"""

import argparse
import importlib
import sys
import time

BENCHMARKS = ("resolver", "intake", "dedupe", "dispatch")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("names", nargs="*", choices=[*BENCHMARKS, []], default=[])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args()
    failed = []
    for name in args.names or BENCHMARKS:
        try:
            module = importlib.import_module(f"benchmarks.{name}.run")
        except ModuleNotFoundError:
            print(f"\n== {name}: no benchmark yet ==")
            continue
        print(f"\n== {name} ==", flush=True)
        started = time.perf_counter()
        code = module.main(["--quick"] if args.quick else [])
        print(f"({name} took {time.perf_counter() - started:.0f} s)")
        if code:
            failed.append(name)
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
