"""Property-based parity with Keras 3 over random shapes and flags (hypothesis).

CI runs a bounded profile (``JRNN_HYPOTHESIS_EXAMPLES``, default 20 examples); set it
higher by hand for a longer search. Failures shrink to a minimal reproducer.
"""

from __future__ import annotations

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import assert_close, bound_jax_caches
from tests.keras_twins import flatten, keras_call, make_pair, random_inputs, random_states

EXAMPLES = int(os.environ.get("JRNN_HYPOTHESIS_EXAMPLES", "20"))


@st.composite
def cell_spec(draw):
    kind = draw(st.sampled_from(["simple", "gru", "lstm"]))
    spec = {"kind": kind, "units": draw(st.integers(1, 6))}
    if kind != "simple":
        spec["implementation"] = draw(st.sampled_from([1, 2]))
        spec["recurrent_activation"] = draw(st.sampled_from(["sigmoid", "hard_sigmoid"]))
    if kind == "gru":
        spec["reset_after"] = draw(st.booleans())
    spec["activation"] = draw(st.sampled_from(["tanh", "relu", "softsign"]))
    spec["use_bias"] = draw(st.booleans())
    return spec


@st.composite
def case(draw):
    stacked = draw(st.booleans())
    spec = (
        [draw(cell_spec()) for _ in range(draw(st.integers(2, 3)))]
        if stacked
        else draw(cell_spec())
    )
    batch, time, features = (
        draw(st.integers(1, 3)),
        draw(st.integers(1, 9)),
        draw(st.integers(1, 4)),
    )
    mask = None
    if draw(st.booleans()):
        bits = draw(st.lists(st.booleans(), min_size=batch * time, max_size=batch * time))
        mask = np.array(bits, bool).reshape(batch, time)
    flags = {
        "return_sequences": draw(st.booleans()),
        "return_state": draw(st.booleans()),
        "go_backwards": draw(st.booleans()),
        "zero_output_for_mask": draw(st.booleans()),
    }
    return spec, batch, time, features, mask, flags, draw(st.booleans()), draw(st.integers(0, 99))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case())
def test_random_parity_with_keras(args):
    bound_jax_caches()
    spec, batch, time, features, mask, flags, use_init, seed = args
    layer, klayer = make_pair(spec, features, batch=batch, time=time, seed=seed, **flags)
    x = random_inputs(batch, time, features, seed + 1)
    init = random_states(layer, batch, seed + 2) if use_init else None
    expected = flatten(keras_call(klayer, x, mask=mask, initial_state=init))
    actual = flatten(layer(x, mask=mask, initial_state=init))
    assert len(actual) == len(expected)
    for k, (a, e) in enumerate(zip(actual, expected)):
        assert_close(a, e, time=time, what=f"output[{k}] of {spec} {flags}")
