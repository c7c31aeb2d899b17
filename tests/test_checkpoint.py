"""kd_jax.checkpoint: exact round trips across mesh shapes, keep-N, best-by-metric, meta, errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from kd_jax.checkpoint import Checkpointer, abstract_like


class _MLP(nn.Module):
  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    return nn.Dense(4)(nn.relu(nn.Dense(16)(x)))


def _mesh(data: int, model: int) -> Mesh:
  return Mesh(np.asarray(jax.devices()[: data * model]).reshape(data, model), ("data", "model"))


def _shardings(tree, mesh: Mesh):
  """Last dim over "model" and first over "data" where they divide; everything else replicated."""

  def spec(x) -> NamedSharding:
    axes = [None] * x.ndim
    if x.ndim >= 1 and x.shape[-1] % mesh.shape["model"] == 0:
      axes[-1] = "model"
    if x.ndim >= 2 and x.shape[0] % mesh.shape["data"] == 0:
      axes[0] = "data"
    return NamedSharding(mesh, P(*axes))

  return jax.tree.map(spec, tree)


@pytest.fixture(scope="module")
def host_state() -> dict:
  """A real train state after two AdamW updates, so every moment is non-zero."""
  model, tx = _MLP(), optax.adamw(1e-2)
  x = jax.random.normal(jax.random.key(0), (8, 8))
  y = jax.random.normal(jax.random.key(1), (8, 4))
  params = model.init(jax.random.key(2), x)
  state = {"step": jnp.asarray(0, jnp.int32), "params": params, "opt_state": tx.init(params)}

  @jax.jit
  def step(state):
    grads = jax.grad(lambda p: jnp.mean((model.apply(p, x) - y) ** 2))(state["params"])
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    return {"step": state["step"] + 1, "params": optax.apply_updates(state["params"], updates),
            "opt_state": opt_state}

  return step(step(state))


def _assert_same(restored, expected, shardings) -> None:
  assert jax.tree.structure(restored) == jax.tree.structure(expected)
  for got, want, sharding in zip(jax.tree.leaves(restored), jax.tree.leaves(expected), jax.tree.leaves(shardings)):
    assert got.dtype == want.dtype and got.shape == want.shape
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    assert got.sharding == sharding


@pytest.mark.slow  # trains, prepares real data or compiles large steps: seconds each
def test_moments_are_nonzero(host_state):
  mu = host_state["opt_state"][0].mu
  assert all(np.abs(np.asarray(leaf)).min() > 0 for leaf in jax.tree.leaves(mu))
  assert int(host_state["step"]) == 2


@pytest.mark.parametrize(("save_mesh", "load_mesh"), [((2, 4), (1, 1)), ((1, 1), (4, 2))])
def test_restore_onto_other_mesh(tmp_path, host_state, save_mesh, load_mesh):
  save_shardings = _shardings(host_state, _mesh(*save_mesh))
  state = jax.device_put(host_state, save_shardings)
  if save_mesh == (2, 4):  # Check the test really saves sharded leaves.
    assert not state["params"]["params"]["Dense_0"]["kernel"].sharding.is_fully_replicated
  meta = {"config": {"lr": 1e-2}, "position": 7}
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(2, state, meta)

  load_shardings = _shardings(host_state, _mesh(*load_mesh))
  with Checkpointer(tmp_path) as ckpt:
    restored, restored_meta = ckpt.restore(abstract_like(host_state, load_shardings))
  _assert_same(restored, host_state, load_shardings)
  assert restored_meta == meta


def test_restore_from_concrete_target(tmp_path, host_state):
  """Concrete arrays as target: they land with the target's own shardings."""
  state = jax.device_put(host_state, _shardings(host_state, _mesh(2, 4)))
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, state, {})
    ckpt.wait()
    target = jax.device_put(jax.tree.map(jnp.zeros_like, host_state), _shardings(host_state, _mesh(1, 2)))
    restored, _ = ckpt.restore(target)
  _assert_same(restored, host_state, jax.tree.map(lambda x: x.sharding, target))


def test_abstract_like(host_state):
  mesh = _mesh(2, 4)
  replicated = NamedSharding(mesh, P())
  abstract = abstract_like(jax.eval_shape(lambda: host_state), replicated)
  assert all(isinstance(x, jax.ShapeDtypeStruct) and x.sharding == replicated for x in jax.tree.leaves(abstract))
  own = abstract_like(host_state)
  assert jax.tree.leaves(own)[0].sharding == jax.tree.leaves(host_state)[0].sharding
  per_leaf = abstract_like(host_state, _shardings(host_state, mesh))
  assert jax.tree.leaves(per_leaf) and all(
    x.sharding == s for x, s in zip(jax.tree.leaves(per_leaf), jax.tree.leaves(_shardings(host_state, mesh)))
  )


def test_keeps_latest_n(tmp_path, host_state):
  with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    for step in range(1, 6):
      ckpt.save(step, host_state, {"step": step})
    ckpt.wait()
    assert ckpt.latest_step() == 5
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [4, 5]
  # A fresh Checkpointer (a resumed run) sees the same steps on disk.
  with Checkpointer(tmp_path, max_to_keep=2) as ckpt:
    assert ckpt.latest_step() == 5
    assert ckpt.read_meta() == {"step": 5}


def test_keeps_best(tmp_path, host_state):
  states = {}
  with Checkpointer(tmp_path, max_to_keep=3, best_metric="ndcg@10") as ckpt:
    for step, score in zip((1, 2, 3), (0.3, 0.5, 0.4)):
      states[step] = jax.tree.map(lambda x, s=step: x * s, host_state)
      ckpt.save(step, states[step], {"step": step}, metrics={"ndcg@10": jnp.asarray(score), "loss": 1.0})
    ckpt.wait()
    assert ckpt.best_step() == 2 and ckpt.latest_step() == 3
    restored, meta = ckpt.restore(abstract_like(host_state), best=True)
  # One folder: the latest 3 and the best (here among them); no second manager, no best/ copy.
  assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoints"]
  _assert_same(restored, states[2], jax.tree.map(lambda x: x.sharding, host_state))
  assert meta == {"step": 2}
  # A later reader (e.g. a student loading its teacher) finds it from the metrics stored with the steps.
  with Checkpointer(tmp_path, best_metric="ndcg@10") as reader:
    assert reader.best_step() == 2 and reader.read_meta(best=True) == {"step": 2}


def test_best_is_kept_beyond_the_latest_n(tmp_path, host_state):
  with Checkpointer(tmp_path, max_to_keep=2, best_metric="ndcg@10") as ckpt:
    for step, score in zip((1, 2, 3, 4, 5), (0.3, 0.9, 0.4, None, 0.5)):
      ckpt.save(step, host_state, {"step": step}, None if score is None else {"ndcg@10": score})
    ckpt.wait()
    assert ckpt.best_step() == 2 and ckpt.latest_step() == 5
  assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit()) == [2, 4, 5]


def test_reads_the_best_of_a_run_folder_of_the_old_layout(tmp_path, host_state):
  """Run folders written before the one-manager layout keep their best save in best/<step>."""
  with Checkpointer(tmp_path / "old_best") as writer:
    writer.save(7, jax.tree.map(lambda x: x * 7, host_state), {"step": 7})
  run = tmp_path / "run"
  with Checkpointer(run) as writer:
    writer.save(9, host_state, {"step": 9})
  (tmp_path / "old_best" / "checkpoints").rename(run / "best")
  with Checkpointer(run, best_metric="ndcg@10") as reader:
    assert reader.best_step() == 7 and reader.latest_step() == 9
    restored, meta = reader.restore(abstract_like(host_state), best=True)
  assert meta == {"step": 7}
  _assert_same(restored, jax.tree.map(lambda x: x * 7, host_state), jax.tree.map(lambda x: x.sharding, host_state))


def test_meta_round_trip(tmp_path, host_state):
  meta = {
    "config": {"model": "cnn", "layers": [64, 128], "lr": 3.0e-4, "dropout": 0.1, "nested": {"a": [1, "b", 2.5]}},
    "data": {"epoch": 3, "position": 12345},
    "teacher": "/runs/teacher",
    "empty": {},
  }
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(10, host_state, meta)
    ckpt.wait()
    assert ckpt.read_meta() == meta
    assert ckpt.restore(abstract_like(host_state))[1] == meta
  with Checkpointer(tmp_path) as reader:  # a fresh reader, as another process would open it
    assert reader.read_meta(step=10) == meta


def test_missing_checkpoint(tmp_path, host_state):
  run = tmp_path / "no_run"
  with Checkpointer(run) as ckpt:
    assert ckpt.latest_step() is None and ckpt.best_step() is None
    with pytest.raises(FileNotFoundError) as info:
      ckpt.restore(abstract_like(host_state))
    with pytest.raises(FileNotFoundError):
      ckpt.restore(abstract_like(host_state), best=True)
  message = str(info.value)
  assert "\n" not in message and str(run) in message and "train it first" in message
  with pytest.raises(FileNotFoundError), Checkpointer(run) as reader:
    reader.read_meta()
  assert not run.exists()  # Looking for a run must not create its folders.


def test_missing_step(tmp_path, host_state):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, host_state, {})
    ckpt.wait()
    with pytest.raises(FileNotFoundError, match="step 7"):
      ckpt.restore(abstract_like(host_state), step=7)


def test_wrong_structure_raises(tmp_path, host_state):
  with Checkpointer(tmp_path) as ckpt:
    ckpt.save(1, host_state, {})
    ckpt.wait()
    missing_key = {k: v for k, v in host_state.items() if k != "opt_state"}
    with pytest.raises(ValueError):
      ckpt.restore(abstract_like(missing_key))
    extra_key = {**host_state, "ema": host_state["params"]}
    with pytest.raises(ValueError):
      ckpt.restore(abstract_like(extra_key))
