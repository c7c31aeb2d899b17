"""Summary (not part of kd_jax; its output is fever_seeds.json beside it), run from the repository root after the
runs of results/main_command/2026-12-01/fever_seeds.log:

  python results/probes/fever_seeds.py

The FEVER-titles students over 3 seeds (workdir/fever/<kind>_student, _s1, _s2; configs/<kind>_student.py with
--config.data.name=fever_titles --config.data.doc_word_len=16 --config.teacher.model.pair_len=48), read from their
eval_test.json (home) and eval_scifact.json (zero-shot on SciFact), searched as mode=search searches: at home
calibrated with the hub correction dev chose (bank and beta), on SciFact calibrated, and with SciFact's dev claims as
the bank (`search.hub_bank=dev`, the kind's k and beta)."""
import json
from pathlib import Path

import numpy as np

SEEDS = ("", "_s1", "_s2")


def figures(d: dict) -> dict:
  return {"ndcg@10": d["full_collection"]["ndcg@10"], "hub": d["hub"]["max_share"]}


def main():
  out = {}
  for kind in ("cnn", "lstm"):
    rows = []
    for s in SEEDS:
      stage = Path("workdir/fever") / f"{kind}_student{s}"
      home = json.loads((stage / "eval_test.json").read_text())
      away = json.loads((stage / "eval_scifact.json").read_text())
      h = home["calibrated"]["hub_norm"]
      rows.append({"stage": stage.name,
                   "home_alone": figures(home), "home_calibrated": figures(home["calibrated"]),
                   "home_searched": {**figures(h), "bank": h["bank_from"], "beta": h["beta"]},
                   "scifact_calibrated": figures(away["calibrated"]),
                   "scifact_claim_bank": {**figures(away["calibrated"]["claim_bank"]),
                                          "k": away["calibrated"]["claim_bank"]["k"],
                                          "beta": away["calibrated"]["claim_bank"]["beta"]}})
    summary = {}
    for key in ("home_alone", "home_calibrated", "home_searched", "scifact_calibrated", "scifact_claim_bank"):
      nd = [r[key]["ndcg@10"] for r in rows]
      hub = [r[key]["hub"] for r in rows]
      summary[key] = {"ndcg@10": [float(np.mean(nd)), float(np.std(nd))], "hub": float(np.mean(hub)),
                      "hub_worst": float(max(hub))}
      print(kind, key, f"{np.mean(nd):.3f} ± {np.std(nd):.3f}", f"hub {100 * np.mean(hub):.1f}% (worst "
            f"{100 * max(hub):.1f}%)", [r[key].get("bank", "") for r in rows] if key == "home_searched" else "")
    out[kind] = {"seeds": rows, "summary": summary}
  Path("results/probes/fever_seeds.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
