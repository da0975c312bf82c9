"""The machine code of the native kernels' register tiles (``jrnn/native``): a guard
against the compiler storing a tile's sums to memory inside its K loop.

A tile keeps its MR x 4 sums in vector registers for the whole K loop, which reads a
weight row, broadcasts each row's input and runs MR x 4 FMAs per k. Whether the
compiler keeps them there depends on inlining: twice a helper that took the sums by
reference (``IncomingDh`` in common.h, ``GatherTaps`` in conv_lstm.cc) was compiled out
of line, and its K loop then stored every sum to the caller's array at every k. The
results stay bitwise the same, so only speed shows it: the float32 GRU training step ran
15% slower for a day, and the ConvLSTM2D forward pass at half speed, before anyone
noticed. This test reads the built library's disassembly (``objdump``, part of the
binutils every C++ toolchain that builds the library installs) and fails on any K loop
that stores more than one vector per 16 FMAs (the prefetching loops spill 1-3 vectors
per 96 FMAs; the regressions above stored one per FMA), or that calls a function.

A K loop here is an innermost loop (no backward jump inside it) with at least 8 FMAs
(``vfmadd*``, or ``vdpbf16ps`` for the bfloat16 tiles) and at least 2 broadcasts of an
input from memory (not rip-relative constants, which the gate maths' polynomials
broadcast). Gate-math loops have FMAs but broadcast from registers or constants.
"""

from __future__ import annotations

import glob
import os
import platform
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from jrnn import native as native_kernels

_LIBRARIES = sorted(
    glob.glob(os.path.join(os.path.dirname(native_kernels.__file__), "_kernels*.so"))
)

pytestmark = pytest.mark.skipif(
    not _LIBRARIES or platform.machine() not in ("x86_64", "AMD64"),
    reason="the native kernels are built for x86-64 only, and were not built here",
)

_INSTRUCTION = re.compile(r"^\s+([0-9a-f]+):\s+(\S+)\s*(.*)$")
_FUNCTION = re.compile(r"^[0-9a-f]+ <(.*)>:$")
_TARGET = re.compile(r"^([0-9a-f]+) <")


@dataclass
class KLoop:
    function: str
    start: int
    fmas: int
    broadcasts: int
    vector_stores: int
    calls: int


def _is_fma(op: str) -> bool:
    return op.startswith(("vfmadd", "vdpbf16ps"))


def _broadcasts_input(op: str, operands: str) -> bool:
    """A broadcast of one value from memory that is not a rip-relative constant."""
    if "%rip" in operands:
        return False
    if "{1to" in operands:  # an FMA's embedded broadcast
        return True
    return op.startswith(("vbroadcastss", "vpbroadcastd")) and "(" in _operands(operands)[0]


def _stores_vector(op: str, operands: str) -> bool:
    """A vector register written to memory (AT&T syntax: the destination is last)."""
    if not op.startswith(("vmov", "vextract", "vmaskmov", "vpmaskmov")):
        return False
    parts = _operands(operands)
    return len(parts) >= 2 and any("mm" in p for p in parts[:-1]) and "(" in parts[-1]


def _operands(text: str) -> list[str]:
    """AT&T operands split at the commas outside an address's parentheses."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    return [*parts, text[start:]]


def _back_target(at: dict[int, int], address: int, op: str, operands: str) -> int | None:
    """The address a jump at ``address`` goes back to, inside its function (``at``)."""
    target = _TARGET.match(operands) if op.startswith("j") else None
    if target is None:
        return None
    t = int(target.group(1), 16)
    return t if t <= address and t in at else None


def k_loops(library: str) -> list[KLoop]:
    """Every innermost loop of ``library`` that looks like a register tile's K loop."""
    listing = subprocess.run(
        ["objdump", "-d", "--no-show-raw-insn", "-C", library],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = []
    for block in listing.split("\n\n"):
        lines = block.strip().splitlines()
        head = _FUNCTION.match(lines[0]) if lines else None
        if head is None:
            continue
        code = [m.groups() for m in map(_INSTRUCTION.match, lines[1:]) if m]
        code = [(int(address, 16), op, operands) for address, op, operands in code]
        at = {address: i for i, (address, _, _) in enumerate(code)}

        for i, (address, op, operands) in enumerate(code):
            start = _back_target(at, address, op, operands)
            if start is None:
                continue
            body = code[at[start] : i + 1]
            nested = any(
                (t := _back_target(at, *ins)) is not None and t >= start for ins in body[:-1]
            )
            if nested:
                continue
            fmas = sum(_is_fma(op) for _, op, _ in body)
            broadcasts = sum(_broadcasts_input(op, operands) for _, op, operands in body)
            if fmas >= 8 and broadcasts >= 2:
                stores = sum(_stores_vector(op, operands) for _, op, operands in body)
                calls = sum(op.startswith("call") for _, op, _ in body)
                found.append(KLoop(head.group(1), start, fmas, broadcasts, stores, calls))
    return found


@pytest.fixture(scope="module")
def loops() -> list[KLoop]:
    if shutil.which("objdump") is None:
        pytest.fail(
            "objdump (binutils) is needed to read the kernels' machine code; it comes with "
            "the C++ toolchain that built jrnn/native/_kernels*.so"
        )
    return k_loops(_LIBRARIES[0])


def test_the_scan_finds_the_tiles_k_loops(loops):
    # Both instruction-set builds are in the one library, whatever this CPU runs; if the
    # pattern stopped matching (another compiler, or symbols stripped), the guard below
    # would pass vacuously.
    by_isa = {
        isa: [k for k in loops if f"jrnn::{isa}::" in k.function] for isa in ("avx512", "avx2")
    }
    assert len(by_isa["avx512"]) >= 20, [k.function[:80] for k in loops]
    assert len(by_isa["avx2"]) >= 20, [k.function[:80] for k in loops]
    # Each kernel family's loops, in its tile or in the helper GCC keeps out of line.
    for names in (
        ("FwdTile<",),
        ("GruFwdTile<",),
        ("BwdTile<", "IncomingDh<"),
        ("DenseGradTile<",),
        ("ConvFwdTile<", "GatherTaps<"),
    ):
        assert any(n in k.function for n in names for k in loops), f"no K loop in {names}"


def test_no_k_loop_stores_its_sums_or_calls_out(loops):
    bad = [
        f"{k.function[:120]} at {k.start:#x}: {k.vector_stores} vector stores, {k.calls} "
        f"calls, {k.fmas} FMAs"
        for k in loops
        if 16 * k.vector_stores > k.fmas or k.calls
    ]
    assert not bad, "K loops that store their sums to memory or call out:\n" + "\n".join(bad)
