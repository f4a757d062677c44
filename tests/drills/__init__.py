"""The fault drills of issue 8, shared by the test suite (small, in CI time) and `bench/drills/`
(full size, run by hand). Each drill returns a report whose `failures()` list is empty on PASS."""
