"""results/RESULTS.md: the experiments' sections in their fixed order, then the README's targets table."""

from experiments import results_md


def test_results_page_joins_the_sections_and_ends_with_the_readmes_targets(tmp_path):
  (tmp_path / "ablation.md").write_text("## Ablation\n")
  (tmp_path / "reproduction.md").write_text("## Reproduction\n")
  readme = tmp_path / "README.md"
  readme.write_text("intro\n<!-- targets: copied -->\n| target | needed |\n|---|---|\n| CNN | 0.60 |\n"
                    "<!-- /targets -->\nafter\n")
  section = results_md.targets_section(readme)
  assert section.startswith("## Where the issue's targets stand") and "| CNN | 0.60 |" in section
  assert "intro" not in section and "after" not in section and "<!--" not in section
  assert results_md.targets_section(tmp_path / "missing.md") == ""
  results_md.write(tmp_path)
  page = (tmp_path / "RESULTS.md").read_text()
  assert page.index("## Reproduction") < page.index("## Ablation") < page.index("## Where the issue's targets stand")
  assert "| CNN alone, SciFact" in page  # the repository's own README table


def test_committed_results_page_ends_with_the_readmes_current_targets():
  """Editing the README's targets table without re-running `results_md.write` leaves RESULTS.md stale."""
  page = (results_md.README.parent / "results" / "RESULTS.md").read_text()
  assert page.endswith(results_md.targets_section())
