"""Linen modules: the cross-attention teacher and the claim-independent students."""
