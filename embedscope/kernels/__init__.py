"""Hot loops, one module per algorithm.

Each module has a CPU twin (numba) that is the reference implementation; GPU twins
(CuPy) follow the same contract. Public kernel functions take arrays and scalars only.
"""
