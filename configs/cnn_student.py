"""Distil the teacher into the claim-independent CNN student, running every missing stage first:

  python run.py --config=configs/cnn_student.py --workdir=workdir

prepares data -> trains the teacher (workdir/teacher, reused if complete) -> scores the training candidates
(reused if stored) -> trains the CNN student (workdir/cnn_student) -> evaluates it on the test split.
`--config=configs/cnn_student.py:smoke` shrinks everything for a quick CPU check.
"""

from configs import common, teacher


def get_config(arg: str = ""):
  # 1,200 steps, not 600: with the lexical channel the dev curve was still rising at 600; best dev full-collection
  # nDCG@10 0.814 against 0.797, 3 seeds each (results/main_recipe.json).
  return student_config(arg, steps=1200)


def student_config(arg: str, steps: int):
  """The distillation chain's config with `steps` student steps (before `smoke` shrinks them); the BiLSTM's
  config starts from it."""
  smoke = arg == "smoke"
  c = common.base_config("distill")
  c.name = "cnn_student"
  c.model = common.student_model("cnn", widths=(1, 2, 3, 5), num_filters=128)
  # Hashed dropout masks (models/fast_ops.py): cheaper steps; dev full-collection nDCG@10 0.655 against 0.626 with
  # Flax's masks, same teacher and seed (README, "What the main command gives").
  c.model.dropout_rng = "hash"
  # The lexical channel (models/lexical.py): vectors also carry 4,096 hashed buckets of learned term weights, so search
  # adds a learned exact-match score. The vocabulary shrinks from 20k to 18,432 words to keep the CNN at 1/20 of the
  # teacher's parameters. Chosen on dev (README, "The lexical channel"): full-collection nDCG@10 0.790 against
  # 0.655 for dense vectors alone, same teacher and seed.
  c.model.lexical_dim = 4096
  # The vocabulary's 2,048 most frequent words a lexical bucket each, every other word hashed into the other 2,048, so
  # no common claim word shares its bucket with a document's word ("ups" of "Grown Ups 2" with "was"). Chosen on dev
  # over the CNNs of both directions, 3 seeds each (mean dev nDCG@10 0.729 / hub 4.9% against 0.732 / 5.02% at 1,024
  # and 0.729 / 5.2% hashed alike; results/lexical_layout.md; 1,024 before SciFact's seeds 1-2 were in).
  # A layout, not parameters: stages trained before are searched at it too.
  c.model.lexical_private = 2048
  c.data.vocab_size = 18432
  # Words outside the vocabulary are hashed to 2^20 ids with no embedding rows (they read <unk>), so rare words still
  # match exactly through the lexical channel, at no parameter cost: dev 0.810 against 0.790 without, same seed.
  c.data.oov_buckets = 1 << 20
  c.model.embed_oov = False
  # The checkpoint kept is the one that searches the whole collection best on dev (what a claim-independent
  # student is for); every other claim's candidates in the batch are negatives, and so are 8 documents per claim
  # mined from the student's own index every 100 steps: the levers chosen on SciFact dev (results/RESULTS.md,
  # "Ablation"; mined negatives: dev full-collection nDCG@10 0.610 against 0.580 at step 600 of this config).
  # configs/reproduce.py turns them off for the paper's recipe.
  c.train = common.train_config(batch_size=32, steps=steps, learning_rate=2e-3, eval_every=100,
                                checkpoint_every=100, eval_full_collection=True, best_metric="full_ndcg@10")
  c.distill = dict(
      temperature=2.0, alpha=0.5, hard="listwise",  # loss = alpha * T^2 KL + (1 - alpha) * hard
      online=False,  # True: teacher logits computed in the step (frozen params) instead of stored scores
      teacher_dir="",  # finished teacher run; '' -> <workdir>/teacher (trained there if missing)
      train_teacher_if_missing=True,
      # Teacher-labelled pseudo-claims (collection sentences; mode=pseudo_claims builds them, distill reuses
      # them): `count` > 0 mixes them into training at `fraction` of the examples; they get the KL term only.
      pseudo=dict(count=0, fraction=0.5, seed=0, min_words=5, max_words=40, max_overlap=0.8),
      # More negatives for the hard-label term (kd_jax/negatives.py): every other claim's candidates in the
      # batch (in_batch), `random` collection documents per claim, and `mined.count` of the student's own top
      # non-gold documents per claim, re-mined from its index every `refresh_every` steps (kd_jax/mined_negatives.py).
      negatives=dict(in_batch=True, random=0, mined=dict(count=8, depth=50, skip=0, refresh_every=100)),
      # Length-varied training documents (kd_jax/doc_crop.py): `prob` of them cut to a random window of at least
      # `min_words` words at every step, so the student sees short documents too.
      doc_crop=dict(prob=0.0, min_words=8),
      # Teacher-scored hard negatives (kd_jax/scored_negatives.py): a finished first-round student's (`stage`) best
      # `count` documents per training claim beyond its candidates, scored once by the teacher and appended to
      # the claim's candidate list, so both loss terms see them; `max_per_doc` > 0: no document joins more than that
      # many claims' lists (the first-round student's hubs). `stage` '' trains the first round as <name>_round1.
      # Off: dev chose neither 8 a claim nor 8 capped at 4 claims a document (full-collection nDCG@10 0.805 and 0.815
      # against 0.816 without, 3 seeds; test 0.743 and 0.741 against 0.726; README, "Teacher-scored hard negatives").
      scored=dict(stage="", count=0, max_per_doc=0),
  )
  # Half of the shared out-of-vocabulary embedding taken out of what the towers read at home, none elsewhere: chosen
  # on dev over the CNNs of both directions (SciFact -> FEVER-titles, 3 seeds; FEVER-titles -> SciFact, 1 seed), mean
  # other dev 0.685 at 0 against 0.657 at 1 (the FEVER CNN on SciFact 0.303 -> 0.197); own 0.848 against 0.847
  # (results/unknown_words_cnn.md). No hub correction elsewhere (search.hub_beta_other 0: 0.812 against 0.810).
  c.search.unk_drop.update(own=0.5, other=0.0)
  # With a bank of real claims for the hub correction (search.hub_bank: the collection's dev claims, or a file of
  # claims), this beta and number of best bank claims averaged, chosen on the other collections' dev (cross-fitted;
  # hubness.choose_bank over every (k, beta): within a point of the best dev nDCG@10, the best with dev hub <= 5%,
  # else the smallest hub): on FEVER-titles test (3 seeds) 0.812 -> 0.807, hub 6.5% -> 4.5%, worst seed 4.7% (at k 10
  # and beta 0.25, chosen before k was: 0.815, hub 5.5%, worst 6.2%; results/claim_bank.md).
  c.search.hub_bank_beta = 0.5
  c.search.hub_bank_k = 50
  # On a CPU that cpu_devices splits in two (for the teacher's sake), the student trains and searches on one of the
  # devices: its steps are faster there (AMD EPYC, 80 steps of this stage: 2.9 against 2.3 steps/s; 50 of the
  # BiLSTM's: 1.20 against 0.93; README, "The teacher recipe").
  c.mesh.split_cpu_data = 1
  # The teacher stage the chain runs when no teacher is found; it always uses this config's data.
  c.teacher = teacher.get_config(arg)
  if smoke:
    common.shrink(c)
  return c
