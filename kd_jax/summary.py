"""The closing table of a main-command run: the student's test figures beside BM25 and the teacher, and where the
files are."""

from __future__ import annotations

from pathlib import Path

from kd_jax import calibration


def _f(x: float | None) -> str:
  return "—" if x is None else f"{x:.3f}"


def _bank(h: dict) -> str:
  """The hub correction's bank where dev chose the training claims (hubness.py; the documents otherwise)."""
  return ", a bank of the training claims" if h.get("bank_from") == "train" else ""


def render(student: dict, teacher: dict | None, stage: Path, teacher_dir: Path, metric: str = "ndcg@10") -> str:
  """A Markdown table of `metric` from the student's eval_test.json and (if evaluated) the teacher's."""
  full = student.get("full_collection", {})
  rows = [("BM25", student["bm25_rerank"][metric], student.get("bm25_full_collection", {}).get(metric))]
  if teacher is not None:
    rows.append(("teacher (cross-encoder)", teacher["rerank"][metric], None))
  rows.append((f"{student['model']} (student alone)", student["rerank"][metric], full.get(metric)))
  if "hub_norm" in student:
    h = student["hub_norm"]
    rows.append((f"{student['model']} alone, hub-corrected (dev-chosen beta {h['beta']:g}{_bank(h)})", None,
                 h["full_collection"][metric]))
  c = student.get("calibrated", {})
  corrected = c.get("hub_norm") if c.get("hub_norm", {}).get("beta", 0) > 0 else None  # mode=search applies it too
  if c:
    searches = "" if corrected else " as mode=search searches"
    rows.append((f"{student['model']} alone, calibrated{searches} ({calibration.describe(c)})", None,
                 c["full_collection"][metric]))
  if corrected:
    rows.append((f"{student['model']} alone, calibrated and hub-corrected (dev-chosen beta {corrected['beta']:g}"
                 f"{_bank(corrected)}) "
                 "as mode=search searches", None, corrected["full_collection"][metric]))
  for method, h in student.get("hybrid", {}).items():
    rows.append((f"{student['model']} + BM25, {method} (dev-chosen weights {h['rerank']['weight']:g} / "
                 f"{h['full_collection']['weight']:g})", h["rerank"]["test"][metric],
                 h["full_collection"]["test"][metric]))
  lines = [f"Test {metric} ({student['split']} split):", "",
           "| system | reranking the BM25 candidates | whole collection |", "|---|---:|---:|"]
  lines += [f"| {name} | {_f(rr)} | {_f(fc)} |" for name, rr, fc in rows]
  hub = student.get("hub")
  if hub:
    also = [(student.get("hub_norm", {}).get("hub"), "hub-corrected"), (c.get("hub"), "calibrated"),
            ((corrected or {}).get("hub"), "calibrated and hub-corrected")]
    also = [f"{100 * h['max_share']:.1f}% {name}" for h, name in also if h]
    lines += ["", f"Hub check: one document is in the student's top {hub['k']} for {100 * hub['max_share']:.1f}% of "
              "claims" + (f" ({', '.join(also)})." if also else ".")]
  lines += ["", f"Files: {stage}/eval_test.json (every figure), {stage}/metrics.jsonl and tensorboard/ (training), "
            f"{stage}/checkpoints/ (latest and best), {stage}/inputs/ (vocabulary); teacher: {teacher_dir}."]
  if teacher is None:
    lines.append(f"The teacher's test figures: python run.py --config=configs/teacher.py "
                 f"--workdir={teacher_dir.parent} --config.name={teacher_dir.name} --config.mode=evaluate")
  return "\n".join(lines)
