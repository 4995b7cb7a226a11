"""t-SNE repulsion by Barnes-Hut on a Morton-ordered tree (any dimension, used for 3-D).

The tree is built without recursion or pointers: points are sorted by Morton code
(``bits`` bits per dimension, interleaved), so every cell is a contiguous run of the
sorted order. A node is split at the first Morton digit on which its first and last
code differ, which skips chains of single-child cells and bounds the tree at 2N
nodes. A node is summarised by its centre of mass when ``cell width < theta x
distance``; with ``theta < 1/sqrt(d)`` a cell that holds the target itself is always
opened, so the self-term is excluded exactly. Leaves (one point, or points sharing a
full code) are summed point by point.
"""

from __future__ import annotations

import numba
import numpy as np

_STACK = 2048
_CHUNK = 256


@numba.njit(cache=True)
def _morton(Y, lo, width, bits):  # pragma: no cover - numba
    n, d = Y.shape
    top = (1 << bits) - 1
    codes = np.empty(n, dtype=np.int64)
    for i in range(n):
        code = 0
        q = np.empty(d, dtype=np.int64)
        for c in range(d):
            v = int((Y[i, c] - lo[c]) / width * (1 << bits))
            q[c] = min(max(v, 0), top)
        for b in range(bits - 1, -1, -1):
            for c in range(d):
                code = (code << 1) | ((q[c] >> b) & 1)
        codes[i] = code
    return codes


@numba.njit(cache=True)
def _build(codes, d, bits, start, end, level, child_first, child_count):  # pragma: no cover - numba
    """Breadth-first node list over the sorted codes; returns the number of nodes."""
    n = codes.shape[0]
    mask = (1 << d) - 1
    start[0], end[0], level[0] = 0, n, 0
    count, head = 1, 0
    while head < count:
        s, e = start[head], end[head]
        child_count[head] = 0
        if e - s > 1 and codes[s] != codes[e - 1]:
            diff = codes[s] ^ codes[e - 1]
            high = 0
            while (diff >> (high + 1)) != 0:
                high += 1
            split = bits - 1 - high // d
            shift = (bits - 1 - split) * d
            child_first[head] = count
            i = s
            while i < e:
                digit = (codes[i] >> shift) & mask
                j = i + 1
                while j < e and ((codes[j] >> shift) & mask) == digit:
                    j += 1
                start[count], end[count], level[count] = i, j, split + 1
                child_count[head] += 1
                count += 1
                i = j
        head += 1
    return count


@numba.njit(cache=True)
def _centres(Ys, start, end, child_first, child_count, n_nodes, com, mass):  # pragma: no cover - numba
    d = Ys.shape[1]
    for node in range(n_nodes - 1, -1, -1):
        for c in range(d):
            com[node, c] = 0.0
        if child_count[node] == 0:
            for p in range(start[node], end[node]):
                for c in range(d):
                    com[node, c] += Ys[p, c]
            mass[node] = end[node] - start[node]
        else:
            total = 0.0
            for ch in range(child_first[node], child_first[node] + child_count[node]):
                for c in range(d):
                    com[node, c] += com[ch, c] * mass[ch]
                total += mass[ch]
            mass[node] = total
        for c in range(d):
            com[node, c] /= mass[node]


@numba.njit(parallel=True, cache=True, fastmath=True)
def _traverse(T, Ys, order, self_join, start, end, level, child_first, child_count, com, mass,
              root_width, theta, dof, rep, z_rows):  # pragma: no cover - numba
    m, d = T.shape
    n_chunks = (m + _CHUNK - 1) // _CHUNK
    theta2 = theta * theta
    for chunk in numba.prange(n_chunks):
        stack = np.empty(_STACK, dtype=np.int64)
        diff = np.empty(d)
        for t in range(chunk * _CHUNK, min(m, (chunk + 1) * _CHUNK)):
            for c in range(d):
                rep[t, c] = 0.0
            z = 0.0
            top = 1
            stack[0] = 0
            while top > 0:
                top -= 1
                node = stack[top]
                if child_count[node] == 0:
                    for p in range(start[node], end[node]):
                        if self_join and order[p] == t:
                            continue
                        d2 = 0.0
                        for c in range(d):
                            diff[c] = T[t, c] - Ys[p, c]
                            d2 += diff[c] * diff[c]
                        base = 1.0 + d2 / dof
                        w = 1.0 / base if dof == 1.0 else base ** -dof
                        z += w
                        for c in range(d):
                            rep[t, c] += w / base * diff[c]
                    continue
                d2 = 0.0
                for c in range(d):
                    diff[c] = T[t, c] - com[node, c]
                    d2 += diff[c] * diff[c]
                width = root_width / (1 << level[node])
                if width * width < theta2 * d2:
                    base = 1.0 + d2 / dof
                    w = 1.0 / base if dof == 1.0 else base ** -dof
                    z += mass[node] * w
                    for c in range(d):
                        rep[t, c] += mass[node] * w / base * diff[c]
                else:
                    for ch in range(child_first[node], child_first[node] + child_count[node]):
                        stack[top] = ch
                        top += 1
            z_rows[t] = z


class BarnesHutRepulsion:
    """Barnes-Hut repulsion with the interface of :class:`~embedscope.kernels.tsne.fft.FFTRepulsion`.

    Parameters
    ----------
    dof : float, default=1.0
        Degrees of freedom of the kernel.
    theta : float, default=0.5
        Opening angle; must stay below ``1 / sqrt(d)`` so the self-cell is opened.
    """

    def __init__(self, dof: float = 1.0, theta: float = 0.5) -> None:
        self.dof = float(dof)
        self.theta = float(theta)

    def __call__(self, sources: np.ndarray, targets: np.ndarray | None = None) -> tuple[np.ndarray, float | np.ndarray]:
        """``(rep, Z)`` exactly as :func:`embedscope.kernels.tsne.exact.exact_repulsion` returns."""
        self_join = targets is None
        S = np.ascontiguousarray(sources, dtype=np.float64)
        T = S if self_join else np.ascontiguousarray(targets, dtype=np.float64)
        n, d = S.shape
        if self.theta >= 1.0 / np.sqrt(d):
            raise ValueError(f"theta={self.theta} must be below 1/sqrt({d}) = {1 / np.sqrt(d):.3f}")
        bits = min(21, 62 // d)
        lo = S.min(axis=0)
        root_width = float((S.max(axis=0) - lo).max()) * (1 + 1e-9) + 1e-12
        codes = _morton(S, lo, root_width, bits)
        order = np.argsort(codes, kind="stable")
        codes = codes[order]
        Ys = np.ascontiguousarray(S[order])
        cap = 2 * n + 1
        start, end, level = (np.empty(cap, dtype=np.int64) for _ in range(3))
        child_first, child_count = np.zeros(cap, dtype=np.int64), np.zeros(cap, dtype=np.int64)
        n_nodes = _build(codes, d, bits, start, end, level, child_first, child_count)
        com, mass = np.empty((n_nodes, d)), np.empty(n_nodes)
        _centres(Ys, start, end, child_first, child_count, n_nodes, com, mass)
        rep = np.empty(T.shape, dtype=np.float64)
        z_rows = np.empty(T.shape[0], dtype=np.float64)
        _traverse(T, Ys, order.astype(np.int64), self_join, start, end, level, child_first, child_count,
                  com, mass, root_width, self.theta, self.dof, rep, z_rows)
        if self_join:
            return rep, max(float(z_rows.sum()), 1e-300)
        return rep, np.maximum(z_rows, 1e-300)
