"""A software prefetch for numba CPU kernels whose reads are random but known early.

numba exposes no prefetch; this emits LLVM's ``llvm.prefetch`` for the first element
of a row of a 2-D array (read access, keep in all cache levels). A prefetch never
faults, so a row index past the end of the array is harmless, though wasted.
"""

from __future__ import annotations

from llvmlite import ir
from numba.core import cgutils, types
from numba.core.extending import intrinsic

__all__ = ["prefetch_row"]


@intrinsic
def prefetch_row(typingctx, array, row):  # pragma: no cover - compiled into numba kernels
    """Hint the CPU to start loading ``array[row, 0]`` into cache."""
    if not (isinstance(array, types.Array) and array.ndim == 2 and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        ary = context.make_array(array_type)(context, builder, args[0])
        index = context.cast(builder, args[1], signature.args[1], types.intp)
        zero = context.get_constant(types.intp, 0)
        pointer = cgutils.get_item_pointer(context, builder, array_type, ary, [index, zero], wraparound=False)
        i32 = ir.IntType(32)
        fn_type = ir.FunctionType(ir.VoidType(), [pointer.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fn_type, "llvm.prefetch.p0")
        # (address, read = 0, locality 3 = keep in every level, data cache = 1)
        builder.call(fn, [pointer, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(array, row), codegen
