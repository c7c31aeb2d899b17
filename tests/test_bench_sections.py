"""BENCHMARKS.md sections owned by other benchmarks: put, replaced in place, and carried over a rewrite."""

from benchmarks import sections


def test_splice_replaces_in_place_and_kept_carries_it(tmp_path):
  path = tmp_path / "BENCHMARKS.md"
  path.write_text("# Benchmarks\n\nspeed tables\n")
  sections.splice(path, "wikipedia_scale", "## Wikipedia scale\n\n| a | 1 |\n")
  sections.splice(path, "other", "## Other\n")
  first = path.read_text()
  assert first.startswith("# Benchmarks\n\nspeed tables\n\n<!-- section: wikipedia_scale -->\n## Wikipedia scale")
  sections.splice(path, "wikipedia_scale", "## Wikipedia scale\n\n| a | 2 |")
  second = path.read_text()
  assert "| a | 2 |" in second and "| a | 1 |" not in second
  assert second.index("wikipedia_scale") < second.index("section: other")  # replaced where it was
  carried = sections.kept(path)
  assert carried.startswith("<!-- section: wikipedia_scale -->") and carried.endswith("<!-- /section: other -->\n")
  assert "speed tables" not in carried
  assert sections.kept(tmp_path / "missing.md") == ""
