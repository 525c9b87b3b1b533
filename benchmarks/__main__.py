"""The benchmarks, one after another, each printing its own table.

    python -m benchmarks                 # every stage alone, at its default size (make bench-stages)
    python -m benchmarks --quick         # every stage alone, small sizes (a smoke run)
    python -m benchmarks resolver intake # some stages
    python -m benchmarks incident [--quick] [options]   # the whole incident (make bench / bench-quick)

`incident` (benchmarks/incident/run.py) runs the system as deployed, all stages at once, and is
what the goals of the whole incident are measured by; the stage benchmarks isolate one service
each (its input published up front) to show what that stage alone can do and where its time goes.
Options after `incident` go to it (`--help`). Speed goals live here, never as timed assertions
in tests.
"""

import argparse
import importlib
import sys
import time

BENCHMARKS = ("resolver", "intake", "dedupe", "dispatch", "reconciliation")


def main() -> int:
    if sys.argv[1:2] == ["incident"]:
        from benchmarks.incident import run

        return run.main(sys.argv[2:])
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
