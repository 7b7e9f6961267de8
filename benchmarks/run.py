"""`make bench`: run every benchmark, then refresh the README table from benchmarks/results/."""

from __future__ import annotations

from benchmarks import runtime_overhead
from benchmarks.common import update_readme_table

BENCHMARKS = (runtime_overhead,)


def main() -> None:
    for benchmark in BENCHMARKS:
        benchmark.main()
    update_readme_table()


if __name__ == "__main__":
    main()
