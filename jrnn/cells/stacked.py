"""StackedRNNCells: several cells run as one, each feeding the next at every step."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from flax import nnx

from jrnn import _checks
from jrnn._config import capture, register
from jrnn.cells.base import Array, RNNCellBase, own_dtype_params


@register
class StackedRNNCells(RNNCellBase):
    """Keras ``StackedRNNCells``: cell ``k`` reads cell ``k-1``'s output at the same step.

    The carry is a tuple with one carry per cell (``((h1, c1), (h2,))`` for
    ``[LSTMCell, GRUCell]``), which is also what ``return_state=True`` returns, nested per
    cell as Keras does. Only the first cell's input projection can be hoisted out of the
    time loop; the others project inside the step.

    Args:
      cells: the cells, first to last; each cell's ``in_features`` must equal the
        previous cell's ``output_size``.

    Example:
      >>> from flax import nnx
      >>> import jrnn
      >>> rngs = nnx.Rngs(0)
      >>> cells = [jrnn.LSTMCell(4, 3, rngs=rngs), jrnn.GRUCell(5, 4, rngs=rngs)]
      >>> cell = jrnn.StackedRNNCells(cells)
      >>> cell.state_size, cell.output_size
      ([[4, 4], 5], 5)
    """

    def __init__(self, cells: Sequence[RNNCellBase], *, name: str | None = None):
        self._config = capture(locals())
        self.name = _checks.name(name, self)
        cells = list(cells)
        if not cells:
            raise ValueError(
                "StackedRNNCells: `cells` must contain at least one cell; received []."
            )
        for k, cell in enumerate(cells):
            if not isinstance(cell, RNNCellBase):
                raise TypeError(
                    f"StackedRNNCells: `cells[{k}]` must be a jrnn cell (RNNCellBase); "
                    f"received {type(cell).__name__}."
                )
            if k and not _compatible(cell.input_shape, cells[k - 1].output_shape):
                raise ValueError(
                    f"StackedRNNCells: `cells[{k}]` ({type(cell).__name__}) takes inputs of shape "
                    f"{cell.input_shape} but `cells[{k - 1}]` outputs {cells[k - 1].output_shape}; "
                    f"build cells[{k}] with in_features={cells[k - 1].output_size}."
                )
        self.cells = nnx.List(cells)
        self.units = cells[-1].units
        self.input_shape = cells[0].input_shape
        self.output_shape = cells[-1].output_shape
        self.policy = cells[0].policy
        self.accepts_constants = any(c.accepts_constants for c in cells)
        self.dropout = max(c.dropout for c in cells)
        self.recurrent_dropout = max(c.recurrent_dropout for c in cells)

    @property
    def native_kernel(self) -> str | None:  # type: ignore[override]
        """``"stacked"`` when every cell has a native kernel: without masks or recurrent
        dropout, the stack over time equals its cells run one after another over the
        whole sequence (cell ``k`` at step ``t`` needs only cell ``k-1``'s output at ``t``
        and its own state), so :class:`~jrnn.RNN` runs one kernel per cell."""
        return "stacked" if all(c.native_kernel is not None for c in self.cells) else None

    @contextlib.contextmanager
    def bound_to(self, features: tuple[int, ...]):
        """Each cell bound to the step inputs it receives: the first to ``features``, the
        next to the first's output shape, and so on."""
        saved = (self.input_shape, self.output_shape)
        with contextlib.ExitStack() as stack:
            step = tuple(features)
            for cell in self.cells:
                stack.enter_context(cell.bound_to(step))
                step = tuple(cell.output_shape)
            try:
                object.__setattr__(self, "input_shape", self.cells[0].input_shape)
                object.__setattr__(self, "output_shape", self.cells[-1].output_shape)
                yield self
            finally:
                object.__setattr__(self, "input_shape", saved[0])
                object.__setattr__(self, "output_shape", saved[1])

    @property
    def state_shapes(self) -> tuple[Any, ...]:  # type: ignore[override]
        """Per-cell tuples of state shapes."""
        return tuple(c.state_shapes for c in self.cells)

    @property
    def state_size(self) -> list[Any]:
        """Keras' nested ``state_size``: one entry per cell."""
        return [c.state_size for c in self.cells]

    def initialize_carry(self, input_shape: tuple[int, ...] | int, rngs: Any = None) -> tuple:
        """A tuple with each cell's zero carry."""
        return tuple(c.initialize_carry(input_shape, rngs) for c in self.cells)

    def dropout_masks(self, batch: int, training: bool, rngs: Any = None) -> tuple[Any, Any]:
        """``(first cell's input masks, per-cell (input masks, recurrent masks))``."""
        per_cell = [c.dropout_masks(batch, training, rngs) for c in self.cells]
        first_in = per_cell[0][0]
        inner = tuple((None if k == 0 else m_in, m_rec) for k, (m_in, m_rec) in enumerate(per_cell))
        return first_in, inner

    def params(self, *, cast: bool = True) -> tuple[dict[str, Array], ...]:  # type: ignore[override]
        """One params dict per cell (``cast`` as :meth:`RNNCellBase.params`)."""
        return self.params_for_length(None, cast=cast)

    def params_for_length(self, time: int | None, *, cast: bool = True) -> tuple[Any, ...]:
        """One params dict per cell, for a call on ``time`` steps."""
        if cast:
            return tuple(c.params_for_length(time) for c in self.cells)
        return tuple(own_dtype_params(c, time) for c in self.cells)

    def cast_params(self, params: Any) -> tuple[Any, ...]:
        """Each cell's params in that cell's compute dtype."""
        return tuple(c.cast_params(p) for c, p in zip(self.cells, params))

    def project_inputs(self, params, x, input_masks):
        """The first cell's input projection."""
        return self.cells[0].project_inputs(params[0], x, input_masks)

    def step(self, params, carry, x_projected, recurrent_masks, constants=None):
        """Run every cell for one step; returns per-cell carries and activations."""
        if recurrent_masks is None:
            recurrent_masks = ((None, None),) * len(self.cells)
        new_carry, records = [], []
        y = None
        for k, cell in enumerate(self.cells):
            in_masks, rec_masks = recurrent_masks[k]
            xp = x_projected if k == 0 else cell.project_inputs(params[k], y, in_masks)
            cell_constants = constants if cell.accepts_constants else None
            c, y, rec = cell.step(params[k], carry[k], xp, rec_masks, cell_constants)
            new_carry.append(c)
            records.append(rec)
        return tuple(new_carry), y, tuple(records)


__all__ = ["StackedRNNCells"]


def _compatible(a: tuple, b: tuple) -> bool:
    """Shapes that agree where both sizes are known (None: a frame size fixed per call)."""
    a, b = tuple(a), tuple(b)
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))
