"""Time ``qa ask`` from process launch to printed answer (cold start), with the shipped model.

Usage: python scripts/bench_startup.py [--runs 5]
Prints the median and each run's seconds; the target is 3 s on the project's 2-core machine.
"""
import argparse
import statistics
import subprocess
import sys
import time

PASSAGE = ("The Normans were the people who in the 10th and 11th centuries gave their name to Normandy, "
           "a region in France. They were led by Rollo, a Viking chieftain.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    seconds = []
    for _ in range(args.runs):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-m", "qa", "ask", "Who led the Normans?", "--context", PASSAGE],
                       check=True, capture_output=True)
        seconds.append(time.perf_counter() - tic)
    print(f"qa ask cold start: median {statistics.median(seconds):.2f} s over {args.runs} runs "
          f"({', '.join(f'{s:.2f}' for s in seconds)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
