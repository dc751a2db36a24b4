"""
Runs a bench/python timing script with process CPU time in place of wall-clock time
(time.perf_counter -> time.process_time), for measurements on a loaded machine where other
processes' time slices would otherwise count. Single-threaded runs only (OMP_NUM_THREADS=1):
with several threads, CPU time adds theirs up.
Usage: cputime.py <script.py> [its arguments...]
"""
import runpy
import sys
import time

time.perf_counter = time.process_time
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
