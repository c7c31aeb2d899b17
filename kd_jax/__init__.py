"""kd_jax: cross-encoder -> claim-independent encoder distillation for document retrieval, in JAX/Flax."""

__version__ = "0.1.0"
