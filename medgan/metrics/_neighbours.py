"""Chunked exact nearest-neighbour search and radius tests shared by the k-NN metrics.

Distances are computed block by block as ||x||² + ||y||² - 2xᵀy with one matrix product per
block (float32 on CPU, float64 on CUDA), after subtracting a common centre so the norms stay
small. Every decision that rounding could flip — which samples are the k nearest, whether a
distance is below a radius — is re-checked in float64 from the raw vectors, so results equal an
exact float64 computation while the bulk of the work stays a fast GEMM and no N×N matrix is held.
"""

from __future__ import annotations

import math

import torch

# Row block so one (block, N) distance tile is about this many elements (~32 MB in float32).
_TILE_ELEMENTS = 8 * 1024 * 1024
# Pairs recomputed in float64 at a time (bounds the gather to ~pairs × D × 8 bytes).
_PAIR_CHUNK = 1024


def work_dtype(device: torch.device) -> torch.dtype:
    # CPUs are ~2× faster in float32; GPUs have ample float64 (and TF32 must not sneak in).
    return torch.float64 if device.type == "cuda" else torch.float32


def row_block(n_columns: int, block_size: int | None) -> int:
    if block_size is not None:
        if block_size < 1:
            raise ValueError(f"block_size must be ≥ 1, got {block_size}")
        return block_size
    return max(1, _TILE_ELEMENTS // max(1, n_columns))


def tolerance_factor(dim: int, dtype: torch.dtype) -> float:
    """Relative error allowance (× (||x||² + ||y||²)) of a squared distance from one GEMM.

    Rounding error of a length-D dot product grows like sqrt(D)·eps in practice; a generous
    multiple keeps the exact re-check covering every decision rounding could flip.
    """
    return 16.0 * math.sqrt(dim) * torch.finfo(dtype).eps


class PairwiseTiles:
    """Squared distances between ``x`` (N, D) and ``y`` (M, D), served in row blocks.

    The fast path works on centred copies in the work precision; exact re-checks read the
    original rows and subtract in float64 (the centre cancels in a difference).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, *, centre: torch.Tensor, block_size: int | None):
        self.x, self.y = x, y
        dtype = work_dtype(x.device)
        centre_work = centre.to(dtype)
        self.x_work = x.to(dtype) - centre_work
        self.y_work = y.to(dtype) - centre_work
        self.x_sq = self.x_work.square().sum(dim=1)
        self.y_sq = self.y_work.square().sum(dim=1)
        self.tol = tolerance_factor(x.shape[1], dtype)
        self.block = row_block(y.shape[0], block_size)

    def blocks(self):
        """Yield (start, stop, approx_sq_dist (B, M), tol (B, M))."""
        n = self.x_work.shape[0]
        for start in range(0, n, self.block):
            stop = min(n, start + self.block)
            xb = self.x_work[start:stop]
            sq = torch.addmm(self.y_sq[None, :], xb, self.y_work.T, alpha=-2.0).add_(self.x_sq[start:stop, None])
            tol = torch.add(self.x_sq[start:stop, None], self.y_sq[None, :]).mul_(self.tol)
            yield start, stop, sq, tol

    def exact_pairs(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Exact float64 squared distances of the pairs (rows[i], cols[i])."""
        out = torch.empty(rows.shape[0], dtype=torch.float64, device=rows.device)
        for s in range(0, rows.shape[0], _PAIR_CHUNK):
            r, c = rows[s:s + _PAIR_CHUNK], cols[s:s + _PAIR_CHUNK]
            out[s:s + _PAIR_CHUNK] = (self.x[r].to(torch.float64) - self.y[c].to(torch.float64)).square().sum(dim=1)
        return out

    def exact_row(self, row: int) -> torch.Tensor:
        """Exact float64 squared distances from x[row] to every row of y."""
        return (self.x[row].to(torch.float64)[None, :] - self.y.to(torch.float64)).square().sum(dim=1)

    def below(self, start: int, sq: torch.Tensor, tol: torch.Tensor, threshold_sq: torch.Tensor) -> torch.Tensor:
        """Exact ``dist² < threshold²`` for one block (threshold float64, broadcastable to the block)."""
        threshold_work = threshold_sq.to(sq.dtype)
        decision = sq < threshold_work
        unsure = (sq - threshold_work).abs_() <= tol
        if unsure.any():
            rows, cols = unsure.nonzero(as_tuple=True)
            exact = self.exact_pairs(rows + start, cols)
            decision[rows, cols] = exact < threshold_sq.expand_as(sq)[rows, cols]
        return decision


def _exact_sorted_candidates(tiles: PairwiseTiles, start: int, sq: torch.Tensor, tol: torch.Tensor,
                             local_rows: torch.Tensor, n_needed: int) -> torch.Tensor:
    """Exact ascending squared distances of the ``n_needed`` nearest columns for some rows of a block.

    Takes the approximate nearest ``n_needed + 8`` candidates, recomputes them exactly, and falls
    back to a full exact row when rounding could have kept a true neighbour out of the candidates.
    """
    n_columns = sq.shape[1]
    n_candidates = min(n_columns, n_needed + 8)
    cand_sq, cand_idx = torch.topk(sq[local_rows], n_candidates, dim=1, largest=False)
    rows = (local_rows + start).repeat_interleave(n_candidates)
    exact = tiles.exact_pairs(rows, cand_idx.reshape(-1)).reshape(-1, n_candidates).sort(dim=1).values
    if n_candidates < n_columns:
        outside_floor = cand_sq[:, -1].to(torch.float64) - tol[local_rows].max(dim=1).values.to(torch.float64)
        for r in (outside_floor <= exact[:, n_needed - 1]).nonzero(as_tuple=True)[0].tolist():
            exact[r] = tiles.exact_row(start + int(local_rows[r])).topk(n_candidates, largest=False).values
    return exact[:, :n_needed]


def kth_neighbour_sq_distances(x: torch.Tensor, ks: tuple[int, ...], *, centre: torch.Tensor,
                               block_size: int | None = None) -> dict[int, torch.Tensor]:
    """Squared distance from each row of x to its k-th nearest other row, for each k in ``ks``.

    As prdc: the row itself is counted as the 0-th neighbour (distance 0), so the k-th nearest
    excluding self is the (k+1)-th smallest entry of the row. Exact float64 values.
    """
    n = x.shape[0]
    k_max = max(ks)
    if k_max + 1 > n:
        raise ValueError(f"k={k_max} needs more than {k_max} samples in the set, got {n}")
    tiles = PairwiseTiles(x, x, centre=centre, block_size=block_size)
    n_candidates = min(n, k_max + 2)
    out = {k: torch.empty(n, dtype=torch.float64, device=x.device) for k in ks}
    for start, stop, sq, tol in tiles.blocks():
        cand_sq, cand_idx = torch.topk(sq, n_candidates, dim=1, largest=False)
        cand_sq = cand_sq.to(torch.float64)
        margin = 2 * tol.max(dim=1).values.to(torch.float64)
        rows = torch.arange(start, stop, device=x.device)
        unsure = torch.zeros(stop - start, dtype=torch.bool, device=x.device)
        for k in ks:
            # The approximate rank-k column is the exact rank-k one when it is separated from its
            # neighbours in rank by more than the rounding allowance: then one exact pair suffices.
            separated = cand_sq[:, k] - cand_sq[:, k - 1] > margin
            if k + 1 < n_candidates:
                separated &= cand_sq[:, k + 1] - cand_sq[:, k] > margin
            unsure |= ~separated
            out[k][start:stop] = tiles.exact_pairs(rows, cand_idx[:, k])
        if unsure.any():
            local = unsure.nonzero(as_tuple=True)[0]
            exact_sorted = _exact_sorted_candidates(tiles, start, sq, tol, local, k_max + 1)
            for k in ks:
                out[k][start + local] = exact_sorted[:, k]
    return out


def nearest_neighbours(query: torch.Tensor, reference: torch.Tensor, *, centre: torch.Tensor,
                       block_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query row, the index of its nearest reference row and the exact float64 distance.

    Ties (equal exact distances) resolve to the lower reference index.
    """
    tiles = PairwiseTiles(query, reference, centre=centre, block_size=block_size)
    m = reference.shape[0]
    dist_sq = torch.empty(query.shape[0], dtype=torch.float64, device=query.device)
    index = torch.empty(query.shape[0], dtype=torch.long, device=query.device)
    for start, stop, sq, tol in tiles.blocks():
        rows = torch.arange(start, stop, device=query.device)
        if m == 1:
            index[start:stop] = 0
            dist_sq[start:stop] = tiles.exact_pairs(rows, torch.zeros_like(rows))
            continue
        cand_sq, cand_idx = torch.topk(sq, 2, dim=1, largest=False)
        margin = 2 * tol.max(dim=1).values
        certain = cand_sq[:, 1] - cand_sq[:, 0] > margin
        index[start:stop] = cand_idx[:, 0]
        dist_sq[start:stop] = tiles.exact_pairs(rows, cand_idx[:, 0])
        for r in (~certain).nonzero(as_tuple=True)[0].tolist():
            row_exact = tiles.exact_row(start + r)
            best = torch.nonzero(row_exact == row_exact.min())[0, 0]
            index[start + r], dist_sq[start + r] = best, row_exact[best]
    return index, dist_sq.sqrt()
