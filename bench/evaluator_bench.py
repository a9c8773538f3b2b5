"""Benchmark of analysis/conditions (common/expr): how fast the seed condition is judged.

Run by hand or from `make bench`: `python bench/evaluator_bench.py [N]`.
Prints evaluations per second of `result[0] >= 0.99` compiled once and
evaluated N times (median of 5 repeats), the same through the cached
`evaluate_condition(text, ...)` path the AnalysisRun controller uses, and an
uncached parse+evaluate per call, with the ratios. No assertions: the figures
are for comparison within one run on one machine.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

from analysis.conditions import compile_expression, evaluate_condition
from common.expr import compile_uncached

SEED_CONDITION = "result[0] >= 0.99"
RESULT = [0.995]
REPEATS = 5
DEFAULT_N = 200_000


def per_second(run: Callable[[int], None], n: int) -> float:
    """Median calls per second over REPEATS runs of n calls."""
    rates = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run(n)
        rates.append(n / (time.perf_counter() - started))
    return statistics.median(rates)


def compiled_once(n: int) -> None:
    compiled = compile_expression(SEED_CONDITION)
    env = {"result": RESULT}
    for _ in range(n):
        compiled.evaluate(env)


def cached_text(n: int) -> None:
    for _ in range(n):
        evaluate_condition(SEED_CONDITION, RESULT)


def parse_every_call(n: int) -> None:
    # __wrapped__ bypasses the lru_cache: a real tokenize + parse + build each time.
    env = {"result": RESULT}
    for _ in range(n):
        compile_uncached(SEED_CONDITION).evaluate(env)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_N
    fast = per_second(compiled_once, n)
    cached = per_second(cached_text, n)
    slow = per_second(parse_every_call, max(n // 20, 1))
    print(f"condition: {SEED_CONDITION!r}  result: {RESULT}  median of {REPEATS} repeats")
    print(f"compiled once, evaluate():            {fast:>12,.0f} evals/s")
    print(f"evaluate_condition(text) with cache:  {cached:>12,.0f} evals/s")
    print(f"parse + evaluate on every call:       {slow:>12,.0f} evals/s")
    print(f"ratio compiled-once / parse-every-call: {fast / slow:.1f}x")
    print(f"ratio compiled-once / cached-text:      {fast / cached:.1f}x")


if __name__ == "__main__":
    main()
