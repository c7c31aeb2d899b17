"""benchmarks/lstm_core.py runs and writes both tables (quick sizes; PyTorch columns only where it is installed)."""

from benchmarks import lstm_core, speed


def test_lstm_core_benchmark_writes_its_tables(tmp_path):
  out = tmp_path / "core.md"
  lstm_core.main(["--quick", "--out", str(out)])
  text = out.read_text()
  assert "python -m benchmarks.lstm_core --quick" in text and "Memory allocator" in text
  rows = [l for l in text.splitlines() if l.startswith("| ") and not l.startswith("|  |")]
  assert [r.split(" | ")[0][2:] for r in rows] == [f"{c}: {p}" for c in lstm_core.LAYERS for p in lstm_core.PASSES] + [
      "product", "gate nonlinearities", "both (the LSTM step)"]
  for row in rows:  # every time measured; the PyTorch columns filled exactly when it is installed
    cells = [c.strip() for c in row.strip("| ").split(" | ")[1:]]
    assert float(cells[0]) > 0 and (cells[1] == "—") == (speed.torch is None)
