"""Speed and size benchmarks, run by command (`python -m benchmarks.speed`), never by the test suite."""
