"""A third student kind defined outside kd_jax, used only by tests: the mean of the words' embeddings through one
hidden layer. It shows what adding a student takes: this module (which registers itself) and its config
(tests/support/tiny_student_config.py), nothing in kd_jax.
"""

import dataclasses

import flax.linen as nn
import jax

from kd_jax.models import registry, students


@dataclasses.dataclass(frozen=True, kw_only=True)
class BagOfWordsConfig(students.StudentConfig):
  hidden: int = 32


class BagOfWordsEncoder(nn.Module):
  config: BagOfWordsConfig

  @nn.compact
  def __call__(self, ids: jax.Array, deterministic: bool = True) -> jax.Array:
    x, mask = students.Embed(self.config, name="tokens")(ids)
    z = nn.relu(nn.Dense(self.config.hidden, name="hidden")(students.masked_mean(x, mask)))
    z = nn.Dropout(self.config.dropout_rate)(z, deterministic=deterministic)
    return nn.Dense(self.config.out_dim, name="proj")(z)


class BagOfWordsStudent(students.DualEncoder):
  encoder_cls = BagOfWordsEncoder


registry.register_student("bow", "Bag of words", BagOfWordsConfig, BagOfWordsStudent)
