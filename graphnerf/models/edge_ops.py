"""Edge-stream primitives of :class:`~graphnerf.models.GMNEncoder`, written for one CPU thread.

The GMN's cost is its ``[E, edge_hidden]`` edge stream (340k edges on the 8-graph benchmark
batch; these measurements were made at ``edge_hidden`` 16, the default then, 32 now): each
operation on it moves 22 MB (44 MB at 32) through memory while doing little arithmetic. Measured
on the benchmark CPU (one thread, ``python -m graphnerf.perf.encoders``), the plain autograd
version spent its time in per-row overheads and in memory traffic rather than in arithmetic:

* ``F.layer_norm`` over rows of 16 values: 20 ms forward, 38 ms backward (the rows are too short
  for its vectorised kernel); two ``[E, 16] x [16, 16]`` products cost 7 ms each.
* ``index_add_`` / ``scatter_add_`` of ``[E, 16]`` rows (the backward pass of every gather, and
  the message aggregation): 14-22 ms; the same sum as a product with the sparse CSR incidence
  matrix: 4 ms.
* every fresh ``[E, 16]`` float32 tensor (22 MB) is new memory for the allocator; the kernel
  then maps and zeroes its pages (a third of the step was system time).

Hence:

* :class:`Incidence`: an index ``[E]`` into ``n`` rows with its CSR incidence matrix, built once
  per forward pass and shared by all blocks; :meth:`Incidence.sum` and the backward pass of
  :meth:`Incidence.gather` are CSR products.
* :class:`EdgeMLP`: the whole residual edge update of a block, ``e + W2 silu(a[src] + b[dst] + C
  LN(e))``, as one autograd function with a hand-written backward pass. It runs over chunks of
  rows small enough to stay in cache, so its temporaries are never materialised at full size;
  it keeps only ``pre = a[src] + b[dst] + C LN(e)`` (and two row statistics) for the backward
  pass, recomputing the normalised input and the activation there.
* :class:`EdgePool`: the edge readout ``mean_{edges of g} silu(W LN(e) + c)`` the same way.
* :func:`unique_rows`: exact de-duplication of node attributes (the lifted state of a node is a
  function of its attributes only; hash entries of hashed levels, hidden neurons and every node
  of two graphs of the same architecture share them).

All of these compute the same functions as the plain formulas (tests/test_gmn.py compares with
the equations written out and with ``torch.autograd.gradcheck``); sums are taken in another
order, which changes results by float rounding only.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EdgeLift",
    "EdgeLiftFiLM",
    "EdgeMLP",
    "EdgePool",
    "Incidence",
    "lift_features",
    "unique_rows",
]

#: rows per chunk in :class:`EdgeMLP` / :class:`EdgePool`: ``[16384, 16]`` float32 is 1 MB, so
#: a chunk's temporaries stay in the L2 / L3 cache
CHUNK_ROWS = 16384


def unique_rows(columns: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Exact de-duplication of the rows formed by ``columns`` (each ``[N]``, any dtype).

    Returns:
        ``(first [U], inverse [N])``: one representative row per distinct row (its first
        occurrence) and, for every row, the index of its distinct row, so that ``rows[first]
        [inverse] == rows``. Values are compared with ``==`` (``-0.0`` equals ``0.0``).

    Each column is replaced by the rank of its value among the column's distinct values; the
    ranks are combined into one integer key per row (mixed radix), which is de-duplicated in
    turn. If the key would overflow 63 bits, ``torch.unique(dim=0)`` is used instead (slower:
    90 ms instead of 12 ms on the 58k nodes of the benchmark batch).
    """
    if not columns:
        raise ValueError("unique_rows needs at least one column")
    n = columns[0].shape[0]
    device = columns[0].device
    codes, radices = [], []
    for col in columns:
        if col.shape != (n,):
            raise ValueError(f"every column must have shape ({n},), got {tuple(col.shape)}")
        values, inverse = torch.unique(col, return_inverse=True)
        codes.append(inverse)
        radices.append(max(values.numel(), 1))
    if math.prod(radices) < 2**62:
        key = torch.zeros(n, dtype=torch.long, device=device)
        scale = 1
        for code, radix in zip(codes, radices, strict=True):
            key += code * scale
            scale *= radix
        _, inverse = torch.unique(key, return_inverse=True)
    else:
        _, inverse = torch.unique(torch.stack(codes, 1), dim=0, return_inverse=True)
    n_unique = int(inverse.max()) + 1 if n else 0
    first = torch.full((n_unique,), n, dtype=torch.long, device=device)
    first.scatter_reduce_(0, inverse, torch.arange(n, device=device), reduce="amin")
    return first, inverse


class Incidence:
    """An index ``[E]`` (e.g. the target node of every edge) into ``n`` rows.

    ``S [n, E]`` is its incidence matrix (``S[i, k] = 1`` if ``index[k] == i``), kept in CSR
    form: the sum of edge rows per node is ``S @ x``, the gradient of a gather ``table[index]``
    is ``S @ grad``. Within a row the columns are in edge order.
    """

    def __init__(self, index: Tensor, n: int) -> None:
        if index.dim() != 1:
            raise ValueError(f"index must be 1-D, got shape {tuple(index.shape)}")
        self.index = index
        self.n = n
        self.counts = torch.bincount(index, minlength=n)
        if self.counts.numel() > n:
            raise ValueError(f"index has values >= n = {n}")
        self._csr: dict[torch.dtype, Tensor] = {}

    def __len__(self) -> int:
        return self.index.numel()

    def matrix(self, dtype: torch.dtype) -> Tensor:
        """``S`` as a sparse CSR tensor of ``dtype`` (built on first use, cached per dtype)."""
        if dtype not in self._csr:
            if self._csr:  # same structure, other values
                first = next(iter(self._csr.values()))
                crow, col = first.crow_indices(), first.col_indices()
            else:
                crow = torch.zeros(self.n + 1, dtype=torch.long, device=self.index.device)
                torch.cumsum(self.counts, 0, out=crow[1:])
                col = torch.argsort(self.index, stable=True)
            values = torch.ones(len(self), dtype=dtype, device=self.index.device)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.filterwarnings("ignore", message=".*[Ss]parse")
                self._csr[dtype] = torch.sparse_csr_tensor(
                    crow, col, values, size=(self.n, len(self)), check_invariants=False
                )
        return self._csr[dtype]

    def reduce(self, x: Tensor) -> Tensor:
        """``S @ x`` for ``x [E, d]`` without autograd: ``[n, d]`` sums per row."""
        # float32 or float64 (the sparse kernel has no bfloat16), autocast off
        dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
        with torch.autocast(x.device.type, enabled=False):
            return (self.matrix(dtype) @ x.to(dtype).contiguous()).to(x.dtype)

    def sum(self, x: Tensor) -> Tensor:
        """Differentiable ``[E, d] -> [n, d]`` sums of the rows sharing an index."""
        return _Sum.apply(x, self)

    def mean(self, x: Tensor) -> Tensor:
        """Differentiable means (0 for rows without edges)."""
        return self.sum(x) / self.counts.clamp_min(1).to(x.dtype)[:, None]

    def gather(self, table: Tensor) -> Tensor:
        """Differentiable ``table[index]``: ``[n, d] -> [E, d]``."""
        return _Gather.apply(table, self)


class _Sum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, inc: Incidence) -> Tensor:
        ctx.inc = inc
        return inc.reduce(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:
        return g.index_select(0, ctx.inc.index), None


class _Gather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: Tensor, inc: Incidence) -> Tensor:
        ctx.inc = inc
        return table.index_select(0, inc.index)

    @staticmethod
    def backward(ctx, g: Tensor) -> tuple[Tensor, None]:
        return ctx.inc.reduce(g), None


def _normalise(x: Tensor, eps: float) -> tuple[Tensor, Tensor, Tensor]:
    """LayerNorm without affine over the last dim: ``(n, mean [rows, 1], rstd [rows, 1])``."""
    mu = x.mean(-1, keepdim=True)
    n = x - mu
    rstd = n.square().mean(-1, keepdim=True).add_(eps).rsqrt_()
    return n.mul_(rstd), mu, rstd


def _layer_norm_backward(dn: Tensor, n: Tensor, rstd: Tensor) -> Tensor:
    """Input gradient of LayerNorm without affine, given ``dL/dn``, ``n`` and ``rstd``."""
    m1 = dn.mean(-1, keepdim=True)
    m2 = (dn * n).mean(-1, keepdim=True)
    return dn.sub_(m1).sub_(n.mul_(m2)).mul_(rstd)


def _grad_or_none(needed: bool, x: Tensor) -> Tensor | None:
    return x if needed else None


class EdgeMLP(torch.autograd.Function):
    """``e + silu(a[src] + b[dst] + LN0(e) C^T) W^T`` on ``[E, d]`` edge states, where
    ``LN0`` is a LayerNorm without affine (fold its ``gamma`` into ``C`` and ``C beta`` into
    ``b``).

    ``apply(e, a, b, c, w, src, dst, src_inc, dst_inc, eps)``: ``e [E, d]``, node tables ``a [Na,
    d]``, ``b [Nb, d]``, ``c [d, d]``, ``w [d, d]``, edge endpoints ``src``, ``dst`` ``[E]``;
    ``src_inc`` / ``dst_inc`` are their :class:`Incidence` (for the gradients of ``a`` and
    ``b``), or None to use ``index_add_``.
    """

    @staticmethod
    def forward(
        ctx,
        e: Tensor,
        a: Tensor,
        b: Tensor,
        c: Tensor,
        w: Tensor,
        src: Tensor,
        dst: Tensor,
        src_inc: Incidence | None,
        dst_inc: Incidence | None,
        eps: float,
    ) -> Tensor:
        e = e.contiguous()
        out, pre = torch.empty_like(e), torch.empty_like(e)
        mus, rstds = [], []  # per row, kept for the backward pass
        ct, wt = c.t(), w.t()
        for s in range(0, e.size(0), CHUNK_ROWS):
            sl = slice(s, s + CHUNK_ROWS)
            n, mu, rstd = _normalise(e[sl], eps)
            mus.append(mu)
            rstds.append(rstd)
            ab = a.index_select(0, src[sl]).add_(b.index_select(0, dst[sl]))
            torch.addmm(ab, n, ct, out=pre[sl])
            torch.addmm(e[sl], F.silu(pre[sl]), wt, out=out[sl])
        stats = torch.cat([torch.cat(mus), torch.cat(rstds)], 1) if mus else e.new_empty(0, 2)
        ctx.save_for_backward(e, stats, pre, c, w, src, dst)
        ctx.incidences = (src_inc, dst_inc)
        ctx.table_rows = (a.size(0), b.size(0))
        ctx.eps = eps
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        e, stats, pre, c, w, src, dst = ctx.saved_tensors
        g = g.contiguous()
        de, dpre = torch.empty_like(e), torch.empty_like(e)
        dc, dw = torch.zeros_like(c), torch.zeros_like(w)
        for s in range(0, e.size(0), CHUNK_ROWS):
            sl = slice(s, s + CHUNK_ROWS)
            gs, p = g[sl], pre[sl]
            dw.addmm_(gs.t(), F.silu(p))
            dp = torch.mm(gs, w, out=dpre[sl])
            torch.ops.aten.silu_backward.grad_input(dp, p, grad_input=dp)
            n = (e[sl] - stats[sl, :1]).mul_(stats[sl, 1:])
            dc.addmm_(dp.t(), n)
            dn = torch.mm(dp, c, out=de[sl])  # d loss / d LN0(e), then in place to d / d e
            _layer_norm_backward(dn, n, stats[sl, 1:]).add_(gs)
        need = ctx.needs_input_grad
        grads = []
        tables = zip(ctx.incidences, (src, dst), ctx.table_rows, need[1:3], strict=True)
        for inc, index, rows, needed in tables:
            if not needed:
                grads.append(None)
            elif inc is not None:
                grads.append(inc.reduce(dpre))
            else:
                grads.append(dpre.new_zeros(rows, dpre.size(1)).index_add_(0, index, dpre))
        return (
            _grad_or_none(need[0], de),
            grads[0],
            grads[1],
            _grad_or_none(need[3], dc),
            _grad_or_none(need[4], dw),
            None,
            None,
            None,
            None,
            None,
        )


def _add_group_sums(total: Tensor, index: Tensor, x: Tensor, max_span: int = 64) -> None:
    """``total.index_add_(0, index, x)``; when the chunk's group ids span few values (graphs of
    a batch come one after the other) as a one-hot matrix product, which avoids
    ``index_add_``'s per-row cost."""
    lo, hi = int(index.min()), int(index.max())
    if hi - lo >= max_span:
        total.index_add_(0, index, x)
        return
    ids = torch.arange(lo, hi + 1, device=index.device)
    total[lo : hi + 1] += (index[:, None] == ids).to(x.dtype).t() @ x


class EdgePool(torch.autograd.Function):
    """Per-group means of ``silu(LN0(e) C^T + c0)``: ``[E, d] -> [n, k]``, the group of each row
    given by an :class:`Incidence` (``LN0``: LayerNorm without affine, folded into ``C``,
    ``c0``).

    ``apply(e, c, c0, inc, eps)``. Nothing of size ``[E, k]`` is kept: the backward pass
    recomputes each chunk.
    """

    @staticmethod
    def forward(ctx, e: Tensor, c: Tensor, c0: Tensor, inc: Incidence, eps: float) -> Tensor:
        e = e.contiguous()
        total = e.new_zeros(inc.n, c.size(0))
        ct = c.t()
        for s in range(0, e.size(0), CHUNK_ROWS):
            sl = slice(s, s + CHUNK_ROWS)
            n, _, _ = _normalise(e[sl], eps)
            _add_group_sums(total, inc.index[sl], F.silu(torch.addmm(c0, n, ct)))
        ctx.save_for_backward(e, c, c0)
        ctx.inc, ctx.eps = inc, eps
        return total / inc.counts.clamp_min(1).to(total.dtype)[:, None]

    @staticmethod
    def backward(ctx, g: Tensor):
        e, c, c0 = ctx.saved_tensors
        inc = ctx.inc
        g_rows = g / inc.counts.clamp_min(1).to(g.dtype)[:, None]  # d mean / d row
        de = torch.empty_like(e)
        dc, dc0 = torch.zeros_like(c), torch.zeros_like(c0)
        ct = c.t()
        for s in range(0, e.size(0), CHUNK_ROWS):
            sl = slice(s, s + CHUNK_ROWS)
            n, _, rstd = _normalise(e[sl], ctx.eps)
            pre = torch.addmm(c0, n, ct)
            dp = torch.ops.aten.silu_backward(g_rows.index_select(0, inc.index[sl]), pre)
            dc.addmm_(dp.t(), n)
            dc0 += dp.sum(0)
            _layer_norm_backward(torch.mm(dp, c, out=de[sl]), n, rstd)
        need = ctx.needs_input_grad
        return (
            _grad_or_none(need[0], de),
            _grad_or_none(need[1], dc),
            _grad_or_none(need[2], dc0),
            None,
            None,
        )


def lift_features(u: Tensor, scale: Tensor, type_scale: Tensor, freqs: Tensor) -> Tensor:
    """The edge lifting's features (:class:`~graphnerf.models.features.EdgeValueLifting`):
    ``[u, sin(a w_k), cos(a w_k), scale]`` with ``a = u type_scale``, ``[E, 2 + 2 K]``."""
    arg = (u * type_scale)[:, None] * freqs
    return torch.cat([u[:, None], torch.sin(arg), torch.cos(arg), scale[:, None]], -1)


class EdgeLift(torch.autograd.Function):
    """The edge lifting's features and projection, ``lift_features(u, scale, s[type], freqs)
    W^T + b`` (:func:`~graphnerf.models.features.lift_features`), evaluated chunk-wise.

    ``apply(u, scale, edge_type, s, freqs, w, b)``: ``u``, ``scale``, ``edge_type`` ``[E]``
    (no gradient), per-type frequency scale ``s [T]``, ``w [d, 2 + 2 K]``, ``b [d]``. The
    backward pass recomputes the features of each chunk.
    """

    @staticmethod
    def forward(ctx, u, scale, edge_type, s, freqs, w, b):
        out = u.new_empty(u.size(0), w.size(0))
        wt = w.t()
        for i in range(0, u.size(0), CHUNK_ROWS):
            sl = slice(i, i + CHUNK_ROWS)
            feats = lift_features(u[sl], scale[sl], s[edge_type[sl]], freqs)
            torch.addmm(b, feats, wt, out=out[sl])
        ctx.save_for_backward(u, scale, edge_type, s, freqs, w)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        u, scale, edge_type, s, freqs, w = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = g.contiguous()
        dw, db, ds = torch.zeros_like(w), g.new_zeros(w.size(0)), torch.zeros_like(s)
        for i in range(0, u.size(0), CHUNK_ROWS):
            sl = slice(i, i + CHUNK_ROWS)
            gs, us, ts = g[sl], u[sl], edge_type[sl]
            st = s[ts]
            feats = lift_features(us, scale[sl], st, freqs)
            dw.addmm_(gs.t(), feats)
            db += gs.sum(0)
            if need[3]:
                _accumulate_scale_grad(ds, gs @ w, feats, freqs, us, ts)
        return (
            None,
            None,
            None,
            _grad_or_none(need[3], ds),
            None,
            _grad_or_none(need[5], dw),
            _grad_or_none(need[6], db),
        )


def _accumulate_scale_grad(
    ds: Tensor, df: Tensor, feats: Tensor, freqs: Tensor, u: Tensor, edge_type: Tensor
) -> None:
    """Add to ``ds [T]`` the gradient of the per-type Fourier scales ``s`` from one chunk.

    ``df [C, 2 + 2 K]`` is the gradient w.r.t. the lifted features ``feats = [u, sin, cos,
    scale]`` (:func:`lift_features`), ``u [C]`` the normalised values and ``edge_type [C]`` their
    types: with ``arg_k = u s w_k``, ``d / d arg_k = dsin_k cos_k - dcos_k sin_k``.
    """
    k = freqs.numel()
    sin, cos = feats[:, 1 : 1 + k], feats[:, 1 + k : 1 + 2 * k]
    darg = df[:, 1 : 1 + k] * cos - df[:, 1 + k : 1 + 2 * k] * sin
    ds.index_add_(0, edge_type, (darg @ freqs) * u)


class EdgeLiftFiLM(torch.autograd.Function):
    """:class:`EdgeLift` followed by FiLM from a node table, evaluated chunk-wise::

        lin = lift_features(u, scale, s[type], freqs) W^T + b            [E, d]
        out = lin * (1 + gamma[src]) + beta[src],  [gamma, beta] = film   film [U, 2 d]

    ``apply(u, scale, edge_type, s, freqs, w, b, film, src)``: as :class:`EdgeLift`, plus the
    per-node modulation table ``film [U, 2 d]`` and the row ``src [E]`` of each edge's source.
    Neither ``lin`` nor the gathered ``film[src]`` (``[E, 2 d]``) is kept or built at full size:
    the backward pass recomputes them per chunk and accumulates ``d film`` with ``index_add_``.
    """

    @staticmethod
    def forward(ctx, u, scale, edge_type, s, freqs, w, b, film, src):
        d = w.size(0)
        out = u.new_empty(u.size(0), d)
        wt = w.t()
        for i in range(0, u.size(0), CHUNK_ROWS):
            sl = slice(i, i + CHUNK_ROWS)
            feats = lift_features(u[sl], scale[sl], s[edge_type[sl]], freqs)
            lin = torch.addmm(b, feats, wt)
            f = film.index_select(0, src[sl])
            torch.addcmul(f[:, d:], lin, f[:, :d], out=out[sl]).add_(lin)
        ctx.save_for_backward(u, scale, edge_type, s, freqs, w, b, film, src)
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        u, scale, edge_type, s, freqs, w, b, film, src = ctx.saved_tensors
        need = ctx.needs_input_grad
        g = g.contiguous()
        d = w.size(0)
        dw, db, ds = torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(s)
        dfilm = torch.zeros_like(film)
        wt = w.t()
        for i in range(0, u.size(0), CHUNK_ROWS):
            sl = slice(i, i + CHUNK_ROWS)
            gs, us, ts, rows = g[sl], u[sl], edge_type[sl], src[sl]
            feats = lift_features(us, scale[sl], s[ts], freqs)
            lin = torch.addmm(b, feats, wt)
            gamma = film.index_select(0, rows)[:, :d]
            if need[7]:
                dfilm.index_add_(0, rows, torch.cat([gs * lin, gs], 1))
            dlin = gs * gamma.add_(1.0)  # d / d lin
            dw.addmm_(dlin.t(), feats)
            db += dlin.sum(0)
            if need[3]:
                _accumulate_scale_grad(ds, dlin @ w, feats, freqs, us, ts)
        return (
            None,
            None,
            None,
            _grad_or_none(need[3], ds),
            None,
            _grad_or_none(need[5], dw),
            _grad_or_none(need[6], db),
            _grad_or_none(need[7], dfilm),
            None,
        )
