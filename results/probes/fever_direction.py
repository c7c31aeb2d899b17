"""Probe (not part of kd_jax; its output is fever_direction.json beside it), run from the repository root:

  KD_JAX_DATA_DIR=../shared/data python results/probes/fever_direction.py fever/cnn_student fever/lstm_student

The other direction for the search-time settings chosen on SciFact students: the FEVER-titles CNN and BiLSTM (one seed
each, workdir/fever, trained by the main configs with --config.data.name=fever_titles --config.data.doc_word_len=16
--config.teacher.model.pair_len=48) through experiments/search_grid.py's rows for the lexical norms (at unk_drop 0)
and for unk_drop (at lexical norms 1). Printed per strength: (own dev, other dev, other test) nDCG@10."""
import json, sys
from pathlib import Path
sys.path.insert(0, ".")
from experiments import search_grid, lexical_norms, unknown_words
out = {}
for st in sys.argv[1:]:
  for name, mod, grid in (("lexical_norms", lexical_norms, lexical_norms.STRENGTHS), ("unknown_words", unknown_words, unknown_words.SHARES)):
    out.setdefault(name, {})[st] = search_grid.stage_rows(mod.SETTING, Path("workdir") / st, list(grid), 1500)
    r = out[name][st]["rows"]
    print(name, st, {s: (round(r[s]["own"]["dev"]["ndcg@10"], 4), round(r[s]["other"]["dev"]["ndcg@10"], 4), round(r[s]["other"]["test"]["ndcg@10"], 4)) for s in r}, flush=True)
  Path("results/probes/fever_direction.json").write_text(json.dumps(out))
