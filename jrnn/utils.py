"""Helpers around jrnn layers: length bucketing against recompilation storms.

``jax.jit`` compiles once per input shape, so calling a model on batches of many
different lengths compiles once per length. Right-padding each batch to one of a few
bucket lengths, with a mask that is False on the padding, bounds the number of
compilations by the number of buckets. Keras' mask semantics keep the states through
masked steps, so the final states equal those of the unpadded sequence, and so does the
last output, except with ``zero_output_for_mask=True`` (a padded last step outputs
zeros). The padded positions of a returned sequence repeat the last output (zeros with
``zero_output_for_mask``); with ``go_backwards=True`` the returned sequence is in
processing order, so the padding comes first and the real steps move by its length.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp

from jrnn import _checks

DEFAULT_BUCKETS = (16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


def bucket_length(length: int, buckets: Sequence[int] = DEFAULT_BUCKETS) -> int:
    """The smallest bucket >= ``length`` (the length itself when it exceeds every bucket)."""
    length = _checks.positive_int(length, "length", "bucket_length")
    if (
        not all(isinstance(b, numbers.Integral) and not isinstance(b, bool) for b in buckets)
        or list(buckets) != sorted(buckets)
        or any(b < 1 for b in buckets)
    ):
        raise ValueError(
            f"bucket_length: `buckets` must be increasing positive lengths; received {buckets!r}."
        )
    return next((b for b in buckets if b >= length), length)


def pad_to_bucket(
    inputs: Any, mask: Any = None, buckets: Sequence[int] = DEFAULT_BUCKETS
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Right-pad ``inputs (batch, time, ...)`` in time to a bucket length.

    Args:
      inputs: ``(batch, time, *features)``.
      mask: optional ``(batch, time)`` booleans of the unpadded inputs (default all True).
      buckets: increasing candidate lengths.

    Returns:
      ``(padded_inputs (batch, bucket, *features), padded_mask (batch, bucket))`` with
      the mask False on the padding. Pass both to the layer: ``layer(x, mask=m)``.

    Example:
      >>> import numpy as np
      >>> x, m = pad_to_bucket(np.ones((2, 21, 3)), buckets=(16, 32))
      >>> x.shape, m.shape, bool(m[:, 21:].any())
      ((2, 32, 3), (2, 32), False)
    """
    x = jnp.asarray(inputs)
    if x.ndim < 3:
        raise ValueError(
            f"pad_to_bucket: `inputs` must have shape (batch, time, ...); received {x.shape}."
        )
    batch, time = x.shape[:2]
    if mask is None:
        m = jnp.ones((batch, time), bool)
    else:
        m = jnp.asarray(mask)
        if m.shape != (batch, time):
            raise ValueError(
                f"pad_to_bucket: `mask` must have shape ({batch}, {time}); received {m.shape}."
            )
        m = m.astype(bool)
    target = bucket_length(time, buckets)
    pad = target - time
    x = jnp.pad(x, [(0, 0), (0, pad)] + [(0, 0)] * (x.ndim - 2))
    m = jnp.pad(m, [(0, 0), (0, pad)])
    return x, m


__all__ = ["DEFAULT_BUCKETS", "bucket_length", "pad_to_bucket"]
