"""Settings shared by every config. Override any field from the command line, e.g.
`--config.data.name=fever_titles --config.data.dir=/data --config.train.steps=500`.
"""

import ml_collections


def data_config() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      # fever_titles | scifact (both under data.dir) | fever (your own FEVER download) | beir (any BEIR folder)
      name="scifact",
      dir="",  # folder holding scifact/ and fever/; empty -> $KD_JAX_DATA_DIR
      cache_dir="",  # prepared-data cache; empty -> $KD_JAX_CACHE or ~/.cache/kd_jax
      fever_train_file="", fever_test_file="", fever_wiki_dir="",
      beir_dir="", beir_train_split="train", beir_test_split="test",
      dev_fraction=0.1, split_seed=0,
      num_candidates=16,
      tokenizer="all-MiniLM-L6-v2",  # or a local Hugging Face model folder
      claim_wp_len=32, doc_wp_len=384,  # the teacher reads up to model.pair_len of claim + document
      claim_word_len=32, doc_word_len=128,
      vocab_size=20000,
      # >0: words outside the vocabulary get one of this many hashed embedding rows instead of one shared <unk>,
      # so rare terms (BM25's strength) stay apart (extra parameters: oov_buckets x model.embed_dim).
      oov_buckets=0,
      max_claims=0,  # >0 keeps only the first N claims of each split (smoke runs)
  ))


def teacher_model() -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      kind="teacher",
      pretrained="all-MiniLM-L6-v2",  # '' = from scratch (ablation), or a local HF BERT folder
      num_layers=6, hidden_size=384, num_heads=12,  # used only from scratch
      pair_len=256,  # [CLS] claim [SEP] doc [SEP] tokens; CPU cost grows with it (needs data.doc_wp_len >= it)
      dtype="float32",  # or bfloat16 (compute only; params stay float32)
      # bf16_f32: multiplies take bf16 inputs and accumulate in f32 (faster where XLA's CPU dot kernels run bf16
      # fast, e.g. AMD Zen 5; slower on this project's Intel CPU: results/TEACHER_SPEED.md). float32: plain f32.
      matmul="float32",
      dropout_bits=32,  # random bits per dropout decision: 32 (Flax's nn.Dropout), 16 or 8 (cheaper masks)
      dropout_rng="threefry",  # or 'hash': each decision from a cheap hash of its index (models/fast_ops.py)
      dropout_rate=0.1, attention_dropout_rate=0.1,
      head="cls",  # relevance head: 'cls', 'mean' or 'seg_cosine' (models/teacher.py); configs/teacher.py picks
  ))


def student_model(kind: str, module: str = "", **own_fields) -> ml_collections.ConfigDict:
  """Fields every student reads, plus the kind's own (its config file passes them, e.g. widths for the CNN).

  kind: a registered student (cnn, lstm; kd_jax/models/registry.py). module: the module defining a student kind
  outside kd_jax (imported first, so it registers itself), '' for the built-in ones.
  """
  return ml_collections.ConfigDict(dict(
      kind=kind, module=module,
      embed_dim=50, glove=True, freeze_embeddings=False, shared_towers=True,
      out_dim=256, scoring="dot", dropout_rate=0.1,
      # 'cosine': the dense parts of claim and document at unit length, times a learned scale starting here;
      # 'doc_cosine': the document's only (models/students.py).
      cosine_scale_init=10.0,
      dropout_rng="threefry",  # or 'hash': each decision from a cheap hash of its position (models/fast_ops.py)
      # >0 (a power of two): vectors gain this many hashed buckets of learned term weights, so search adds a learned
      # exact-match score to the dense one (models/lexical.py); 0: dense vectors only.
      lexical_dim=0,
      # >0: the vocabulary's this many most frequent words get a lexical bucket each, the others hash into the rest, so
      # a common claim word shares its bucket with no document word (a false match to a quarter of all claims makes a
      # hub); a layout, not parameters, so searchable at any value (models/lexical.py).
      lexical_private=0,
      # False: hashed out-of-vocabulary words (data.oov_buckets) get no embedding rows: they read <unk>'s, and only the
      # lexical channel tells them apart (exact matches of rare words at no parameter cost).
      embed_oov=True,
      **own_fields,
  ))


def train_config(**overrides) -> ml_collections.ConfigDict:
  base = dict(
      batch_size=32,  # claims per step (each with data.num_candidates documents)
      steps=1000, learning_rate=1e-3, warmup_steps=50, weight_decay=0.01, grad_clip=1.0,
      log_every=10, eval_every=200, checkpoint_every=200, keep_checkpoints=2,
      best_metric="ndcg@10", eval_batch_size=64, eval_split="dev",
      eval_at_start=True,  # a dev evaluation before the first step (the curve's starting point)
      list_size=0,  # >0: train on each claim's golds + random negatives, this many candidates (0 = all)
      # Students: also search the whole collection with the dev claims at each evaluation (full_ndcg@10,
      # full_recall@10, full_recall@100), so best_metric can choose the checkpoint that searches best.
      eval_full_collection=False,
      # XLA:CPU compiler options for the train step (jax.jit's compiler_options), on a CPU mesh only; set per model
      # where they were measured to help (kd_jax/xla_cpu.py). Empty: XLA's defaults.
      xla_cpu_options={},
  )
  base.update(overrides)
  return ml_collections.ConfigDict(base)


def base_config(mode: str) -> ml_collections.ConfigDict:
  return ml_collections.ConfigDict(dict(
      mode=mode,  # a name in run.MODES: train_teacher | score_candidates | pseudo_claims | distill | evaluate |
                  # index | search (kd_jax/modes/) | reproduce | pseudo_table (experiments/)
      name="",  # stage folder under --workdir
      seed=0,
      resume=True,  # continue from the latest checkpoint in the stage folder
      # Multi-host jobs (README, "Running on several hosts"): one process per host. With coordinator_address
      # empty, JAX detects the cluster (TPU VMs, SLURM); else num_processes and process_id say who this is.
      distributed=dict(enabled=False, coordinator_address="", num_processes=0, process_id=-1,
                       initialization_timeout_s=300,
                       heartbeat_timeout_s=30),  # a dead peer ends the others' run after this long
      # -1: all devices. split_cpu_data: on a CPU that cpu_devices split, this many devices along data (-1: all
      # of them; students set 1, sharding.stage_mesh).
      mesh=dict(data=-1, model=1, split_cpu_data=-1),
      # CPU hosts: run as this many XLA devices, so data-parallel steps put one shard on each core (teacher step
      # 1.13x faster on this project's 2 cores; students' slower, so they use one: mesh.split_cpu_data). 0: JAX's
      # default (one). Ignored on TPU/GPU, and where XLA_FLAGS sets --xla_force_host_platform_device_count.
      cpu_devices=2,
      data=data_config(),
      # mode=index/search/evaluate on another collection than the training data: a BEIR folder or a .jsonl of
      # {"_id", "title", "text"} (`path`), or a dataset kd_jax knows (`dataset`: scifact, fever_titles). `name`
      # names its index (<stage>/index/<name>/) and eval_<name>.json; empty: the folder, file or dataset name.
      # max_claims: evaluate on the first N test claims of the collection (0 = all).
      collection=dict(path="", dataset="", name="", max_claims=0),
      # How mode=index stores document vectors: float32, bfloat16 (half the bytes) or int8 with a scale per row (a
      # quarter); compact indexes live beside the float32 one (<stage>/index/<name>-<dtype>/), search reads either.
      index=dict(dtype="float32"),
      # mode=search: a claim, or a file of one claim per line. hybrid=linear, zscore, rrf, gated, coverage or
      # zcoverage fuses the student with BM25 at `hybrid_weight` (the student's share; -1: the weight mode=evaluate
      # chose on dev, for the calibrated student when search is calibrated). The student alone searches with the hub
      # correction at `hub_beta` (-1: on the stage's own collection, the beta mode=evaluate chose on its dev for that
      # search, calibrated or not; on any other, `hub_beta_other`, chosen per student config on FEVER-titles dev at its
      # calibration with the 5% hub ceiling enforced there, experiments/unknown_words.py; 0: off).
      # ivf.lists > 0 searches approximately: k-means lists, `probe` of them scored per claim
      # (kd_jax/ivf.py; built once beside the index). For millions of documents; exact below that.
      # Calibration (kd_jax/calibration.py), for the student alone and fused; mode=evaluate reports it beside the
      # uncalibrated figures (`calibrated`). doc_norms: how far each document's dense norm is pulled toward the
      # searched collection's median (0: as trained, 1: all at the median), on the stage's own training collection and
      # on any other. stop_df: words in more than this share of the training collection's documents, or of its
      # training claims, never match in the lexical channel (1: all match). Chosen on dev: experiments/calibration.py,
      # results/calibration.json.
      # lex_norms: the same pull for documents' lexical-channel norms, chosen on dev on top of those
      # (experiments/lexical_norms.py, results/lexical_norms.json): left alone at home, all at the median elsewhere
      # (measured with SciFact students on FEVER-titles only). unk_drop: the share of the shared out-of-vocabulary
      # embedding (<unk>) taken out of what the towers read when encoding claims and documents; it changes the vectors,
      # so mode=index stores them apart (<stage>/index/<collection>-unk<share>/); chosen on dev on top of the others,
      # per student kind (experiments/unknown_words.py, results/unknown_words_<kind>.json): the student configs set
      # it; 0 here leaves a student of your own as trained.
      # hub_bank: the hub correction's bank (kd_jax/hubness.py) made of real claims instead of the collection's
      # documents read as claims: "dev" the searched collection's dev claims, or a file of claims, one per line (a
      # query log); searched with it, the correction is applied at hub_bank_beta, chosen per student kind with such
      # banks (experiments/claim_bank.py): the student configs set it, 0 here leaves a student of your own alone;
      # hub_bank_k: how many of its best claims of that bank a document's penalty averages, chosen with that beta
      # (the home banks below average hub_norm.k).
      # mode=evaluate reports it on another collection with dev claims, searched calibrated, when hub_bank_beta > 0
      # (`calibrated.claim_bank` of its json).
      search=dict(query="", query_file="", top_k=10, hybrid="", hybrid_weight=-1.0, hub_beta=-1.0,
                  hub_beta_other=0.0, hub_bank="", hub_bank_beta=0.0, hub_bank_k=10,
                  doc_norms=dict(own=0.25, other=1.0), stop_df=0.25,
                  lex_norms=dict(own=0.0, other=1.0), unk_drop=dict(own=0.0, other=0.0),
                  ivf=dict(lists=0, probe=32)),
      # Students' evaluation also reports student + BM25 fusion, its weight chosen on dev; () turns it off.
      hybrid=dict(methods=("linear", "zscore", "rrf", "gated", "coverage", "zcoverage"), depth=100),
      # Students' evaluation also reports the student alone with hub correction (kd_jax/hubness.py): each
      # document's mean of its `k` best scores over a bank of queries is subtracted, at a weight chosen on dev. On the
      # stage's own collection dev also chooses the bank among `own_banks` ("documents": `bank` of the collection's
      # documents read as claims; "train": the stage's training claims, texts only), and mode=search applies that
      # choice there (results/probes/home_train_bank.json). `unlabelled_claims=True` checks the 5% hub ceiling on dev's
      # claims together with the collection's unlabelled held-out claims (FEVER's NOT ENOUGH INFO claims of the
      # training file; none in BEIR folders). Off: on the FEVER-titles CNN's 3 seeds it changed one choice, and that
      # seed's test hub went from 3.5% to 5.3% (results/probes/unlabelled_hub.json).
      hub_norm=dict(bank=2000, k=10, seed=0, own_banks=("documents", "train"), unlabelled_claims=False),
  ))


def shrink(c: ml_collections.ConfigDict) -> None:
  """`smoke` variant: a few real claims and steps, so the whole chain runs in minutes on a laptop CPU."""
  shrink_data(c.data)
  # The smoke teacher is the chain's costliest stage (22M parameters on a CPU): 4 steps on 32-token pairs still train
  # and evaluate it three times, and cut the test suite's chains by about 7 s each (8 steps at 48 tokens before).
  if c.model.kind == "teacher":
    c.model.pair_len = 32
  c.train.steps = 12 if c.model.kind != "teacher" else 4
  c.train.batch_size = 8  # divisible by the 8 fake devices the tests use
  c.train.eval_every = 6 if c.model.kind != "teacher" else 2
  c.train.checkpoint_every = c.train.eval_every
  c.train.log_every = 3
  c.train.eval_batch_size = 16
  c.train.warmup_steps = 2
  if "distill" in c and "mined" in c.distill.get("negatives", {}):
    c.distill.negatives.mined.refresh_every = 5  # the smoke chain re-mines (steps 5 and 10), as the full one does


def shrink_data(d: ml_collections.ConfigDict) -> None:
  d.max_claims = 48
  d.num_candidates = 8
  d.doc_wp_len = 32
  d.doc_word_len = 48
