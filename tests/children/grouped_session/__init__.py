"""A tiny test tree that `tests/test_test_groups.py` runs on 2 processes to check this suite's grouping.

Its files are named `check_*.py` so that the suite itself never collects them.
"""
