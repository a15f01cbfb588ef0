"""Oracles: the attention metrics computed the plain way, from whole patterns, in numpy.

The app never forms whole patterns for these (core reads them off each query's
log-sum-exp during the forward, or one layer at a time); tests hold what core computes to
these definitions.
"""
from __future__ import annotations

import numpy as np


def _diagonal_mean(pattern: np.ndarray, offset: int, first_query: int) -> np.ndarray:
    """Mean of pattern[..., q, q - offset] over queries q >= first_query -> [...] float64."""
    n = pattern.shape[-1]
    q = np.arange(first_query, n)
    if len(q) == 0:
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., q, q - offset].astype(np.float64).mean(axis=-1)


def previous_token_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key q-1 over queries 1..n-1."""
    return _diagonal_mean(pattern, 1, 1)


def self_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key q over queries 1..n-1.

    Query 0 sees only itself (weight 1 by construction), so it is left out.
    """
    return _diagonal_mean(pattern, 0, 1)


def first_token_score(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean weight on key 0 over queries 1..n-1."""
    n = pattern.shape[-1]
    if n < 2:
        return np.full(pattern.shape[:-2], np.nan)
    return pattern[..., 1:, 0].astype(np.float64).mean(axis=-1)


def mean_entropy(pattern: np.ndarray) -> np.ndarray:
    """[..., query_pos, key_pos] -> [...]: mean over queries of the row entropy in bits."""
    p = np.asarray(pattern, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)  # 0 log 0 = 0
    return terms.sum(axis=-1).mean(axis=-1) / np.log(2)


def induction_score(pattern: np.ndarray, length: int, offset: int = 1) -> np.ndarray:
    """Induction score of patterns over [offset prefix tokens] + r + r, len(r) = length.

    [..., query_pos, key_pos] -> [...]. The query at the second copy's j-th token
    (position offset + length + j) reads the same token as position offset + j; an
    induction head attends to what came next, offset + j + 1. Averaged over j = 0..length-2.
    """
    j = np.arange(length - 1)
    return pattern[..., offset + length + j, offset + j + 1].astype(np.float64).mean(axis=-1)
