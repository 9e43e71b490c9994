#!/usr/bin/env python3
"""Recorder benchmark: a shim for `lara bench recorder` (same options; the code is
lara_policy/ros/bench_recorder.py):

    source env.sh && python scripts/bench_recorder.py --minutes 10
"""
import sys

from lara_policy.ros.bench_recorder import main

if __name__ == "__main__":
    sys.exit(main())
