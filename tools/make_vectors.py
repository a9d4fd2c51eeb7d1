#!/usr/bin/env python3
"""Independent golden-vector generator for apex-rs (spec: shared/apex-spec.md §0.1, §4).

Writes one .safetensors conformance vector per case into tests/vectors/ and a set of
deliberately broken files into tests/vectors-bad/.

Independence: nothing here is derived from the Rust code or from the hand-derived gradient
formulas of spec §5. Every forward is written straight from spec §4; every gradient comes from
HIPS autograd (reverse mode) through that forward, of L = sum(out * grad_out). All maths runs in
float64 on inputs that were first rounded to float32; expected tensors are stored as float32.

Self-checks (assert, all in f64):
  * Monarch: the two §4.1 unit tests (dense matrices and forward of [1,2,3,4]); the vectorised
    5-step forward == a scalar-loop transcription of steps 1-4; Mon(I)ᵀ == the §4.1 dense formula;
    out == x·denseᵀ for every monarch vector.
  * MixColumn / MixRow: fused dense forward X·W_newᵀ + b_new == unfused forward (1e-10), the
    mix_row weight-side form == the input-side form of §4.3.
  * Every autograd gradient: a central finite-difference directional-derivative check.
  * Every written file is read back (own reader, and the `safetensors` package if installed),
    and every tensor shape is checked against the shape derived from the metadata alone.
  * Headroom: the expected tensors are recomputed in float32 arithmetic and must stay below 10%
    of the §0.1 tolerance (atol = 1e-4·max|want|, rtol = 1e-4), so the vectors are not too tight
    for a correct single-precision implementation.

Usage:  python3 tools/make_vectors.py [--out tests/vectors] [--bad tests/vectors-bad]
Needs:  numpy, autograd   (pip install numpy autograd).  Optional: safetensors (read-back check).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import struct
import sys

import numpy as onp
import autograd.numpy as np
from autograd import grad

# ----------------------------------------------------------------------------------------------
# safetensors writer / reader (standard layout)
# ----------------------------------------------------------------------------------------------


def st_bytes(tensors: list[tuple[str, onp.ndarray]], metadata: dict[str, str]) -> bytes:
    """Serialise to the standard safetensors layout: u64 LE header length N, N bytes of JSON
    (space-padded so that 8 + N is a multiple of 8), then the tensor bytes back to back in the
    order given. All tensors are stored as little-endian F32, C order."""
    header: dict = {"__metadata__": {str(k): str(v) for k, v in metadata.items()}}
    blobs = []
    off = 0
    for name, arr in tensors:
        a = onp.ascontiguousarray(onp.asarray(arr, dtype="<f4"))
        raw = a.tobytes(order="C")
        header[name] = {"dtype": "F32", "shape": list(a.shape),
                        "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    return struct.pack("<Q", len(hjson)) + hjson + b"".join(blobs)


def st_read(data: bytes) -> tuple[dict[str, onp.ndarray], dict[str, str]]:
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    body = data[8 + n:]
    out = {}
    spans = []
    for name, info in header.items():
        assert info["dtype"] == "F32"
        s, e = info["data_offsets"]
        spans.append((s, e))
        a = onp.frombuffer(body[s:e], dtype="<f4").reshape(info["shape"])
        out[name] = a
    spans.sort()
    pos = 0
    for s, e in spans:
        assert s == pos, "non-contiguous data offsets"
        pos = e
    assert pos == len(body), "trailing bytes"
    return out, meta


# ----------------------------------------------------------------------------------------------
# Monarch (§4.1)
# ----------------------------------------------------------------------------------------------


def find_divisor(k: int) -> int:
    """§4.1: sqrt(k) if it is an integer, else the divisor of k closest to sqrt(k), smaller on tie."""
    r = math.isqrt(k)
    if r * r == k:
        return r
    sq = math.sqrt(k)
    best = None
    for d in range(1, k + 1):
        if k % d == 0:
            if best is None or abs(d - sq) < abs(best - sq):  # strict <: smaller wins ties
                best = d
    return best


def monarch_forward(X, W1, W2):
    """§4.1 batched forward of rows X (n×k). W1: b×q×p, W2: l×s×r with b·p = k, l·r = b·q.
    Step 5 ("batched") of the spec: reshape, block-diag GEMM, stride permutation, block-diag
    GEMM, output permutation."""
    n, k = X.shape
    b, q, p = W1.shape
    l, s, r = W2.shape
    assert b * p == k and l * r == b * q
    Xt = np.reshape(X, (n, b, p))                               # x̃[n, i, j] = x[n, i·p + j]
    y1 = np.einsum("iaj,nij->nia", W1, Xt)                      # 1. y1[i·q + a]
    y1 = np.reshape(y1, (n, r, l))                              #    flat f = ρ·l + λ
    z = np.transpose(y1, (0, 2, 1))                             # 2. z[λ][ρ] = y1[ρ·l + λ]
    y2 = np.einsum("lsr,nlr->nls", W2, z)                       # 3. y2[λ][σ]
    return np.reshape(np.transpose(y2, (0, 2, 1)), (n, s * l))  # 4. out[σ·l + λ] = y2[λ][σ]


def monarch_row_loops(x, W1, W2):
    """Scalar transcription of §4.1 steps 1-4 for one row (check only)."""
    b, q, p = W1.shape
    l, s, r = W2.shape
    y1 = [0.0] * (b * q)
    for i in range(b):
        for a in range(q):
            y1[i * q + a] = sum(W1[i, a, j] * x[i * p + j] for j in range(p))
    z = [[y1[rho * l + lam] for rho in range(r)] for lam in range(l)]
    y2 = [[sum(W2[lam, sig, rho] * z[lam][rho] for rho in range(r)) for sig in range(s)]
          for lam in range(l)]
    out = [0.0] * (s * l)
    for lam in range(l):
        for sig in range(s):
            out[sig * l + lam] = y2[lam][sig]
    return onp.array(out)


def monarch_dense_formula(W1, W2):
    """§4.1 dense matrix: M[σ·l+λ, i·p+j] = Σ_ρ W2[λ,σ,ρ]·W1[i,a,j], f = ρ·l+λ, i = f//q, a = f%q."""
    b, q, p = W1.shape
    l, s, r = W2.shape
    M = onp.zeros((s * l, b * p))
    for lam in range(l):
        for sig in range(s):
            for rho in range(r):
                f = rho * l + lam
                i, a = divmod(f, q)
                for j in range(p):
                    M[sig * l + lam, i * p + j] += W2[lam, sig, rho] * W1[i, a, j]
    return M


def monarch_dense(W1, W2):
    """Dense M with Mon(x) = x·Mᵀ: apply the forward to the identity and transpose."""
    k = W1.shape[0] * W1.shape[2]
    return onp.asarray(monarch_forward(onp.eye(k, dtype=W1.dtype), W1, W2)).T


def check_monarch_unit_tests():
    # Unit test 1 (b=2, p=2)
    W1 = onp.fromfunction(lambda i, a, j: 1 + 4 * i + 2 * a + j, (2, 2, 2))
    W2 = onp.fromfunction(lambda i, a, j: 10 + 4 * i + 2 * a + j, (2, 2, 2))
    want = onp.array([[10, 20, 55, 66], [42, 56, 105, 120], [12, 24, 65, 78], [48, 64, 119, 136]],
                     dtype=float)
    assert onp.array_equal(monarch_dense(W1, W2), want)
    assert onp.array_equal(monarch_dense_formula(W1, W2), want)
    y = onp.asarray(monarch_forward(onp.array([[1.0, 2.0, 3.0, 4.0]]), W1, W2))
    assert onp.array_equal(y, [[479, 949, 567, 1077]])
    # Unit test 2 (b=2, p=3)
    W1 = onp.fromfunction(lambda i, a, j: (9 * i + 3 * a + j) % 5 - 2, (2, 3, 3))
    W2 = onp.fromfunction(lambda i, a, j: (9 * i + 3 * a + j) % 7 - 3, (2, 3, 3))
    want = onp.array([[8, 3, -2, 0, -1, -2], [-1, -2, 2, -2, -1, 0], [-1, 0, 1, 0, 2, 4],
                      [2, 4, -4, 12, -3, -3], [-3, -3, -3, 0, -2, -4], [-2, -4, 4, -2, 2, 1]],
                     dtype=float)
    assert onp.array_equal(monarch_dense(W1, W2), want)
    assert onp.array_equal(monarch_dense_formula(W1, W2), want)
    # find_divisor values listed in §4.1
    for k, nb in [(768, 24), (2064, 43), (128, 8), (1024, 32), (1376, 32), (2752, 43),
                  (4096, 64), (5504, 64), (12, 3), (7, 1)]:
        assert find_divisor(k) == nb, (k, find_divisor(k), nb)


# ----------------------------------------------------------------------------------------------
# MixColumnLinear (§4.2), MixRowLinear (§4.3), S2 (§4.4) — forwards written from the spec
# ----------------------------------------------------------------------------------------------


def mix_column_forward(X, W, bias, S, W1, W2, v, c, k, t, mix):
    Y0 = np.dot(X, W.T)
    if bias is not None:
        Y0 = Y0 + bias
    Z = Y0[:, 0:t] + np.dot(X, S.T)
    ZD, ZA, ZE = Z[:, 0:k], Z[:, k:2 * k], Z[:, 2 * k:t]
    if mix:
        outD = monarch_forward(ZA, W1, W2) + ZD * v
        outA = ZA * c
    else:
        outD = ZD * v
        outA = monarch_forward(ZA, W1, W2) + ZA * c
    return np.concatenate([outD, outA, ZE, Y0[:, t:]], axis=1)


def mix_column_fuse(W, bias, S, M, v, c, k, t, mix):
    """§4.2 fusion; the bias transforms exactly like a weight column (clean rule)."""
    Wt = W.copy()
    Wt[0:t] += S
    Wn = Wt.copy()
    WD, WA = Wt[0:k], Wt[k:2 * k]
    if mix:
        Wn[0:k] = v[:, None] * WD + M @ WA
        Wn[k:2 * k] = c[:, None] * WA
    else:
        Wn[0:k] = v[:, None] * WD
        Wn[k:2 * k] = M @ WA + c[:, None] * WA
    bn = None
    if bias is not None:
        bn = bias.copy()
        bD, bA = bias[0:k], bias[k:2 * k]
        if mix:
            bn[0:k] = v * bD + M @ bA
            bn[k:2 * k] = c * bA
        else:
            bn[0:k] = v * bD
            bn[k:2 * k] = M @ bA + c * bA
    return Wn, bn


def mix_row_weight(W, S, W1, W2, v, k, t, mix):
    """§4.3: materialise Ŵ as the reference does (Mon applied to the rows of U_A)."""
    U = W[:, 0:t] + S
    UD, UA, UE = U[:, 0:k], U[:, k:2 * k], U[:, 2 * k:t]
    if mix:
        blocks = [UD * v + monarch_forward(UA, W1, W2), UA]
    else:
        blocks = [UD * v, monarch_forward(UA, W1, W2) + UA]
    return np.concatenate(blocks + [UE, W[:, t:]], axis=1)


def mix_row_forward(X, W, bias, S, W1, W2, v, k, t, mix):
    out = np.dot(X, mix_row_weight(W, S, W1, W2, v, k, t, mix).T)
    if bias is not None:
        out = out + bias
    return out


def mix_row_input_side(X, W, bias, S, M, v, k, t, mix):
    """§4.3 equivalent input-side form (check only)."""
    U = W[:, 0:t] + S
    XD, XA, XE, XF = X[:, 0:k], X[:, k:2 * k], X[:, 2 * k:t], X[:, t:]
    XpD = XD * v
    XpA = XA + (XD @ M if mix else XA @ M)
    out = XpD @ U[:, 0:k].T + XpA @ U[:, k:2 * k].T + XE @ U[:, 2 * k:t].T + XF @ W[:, t:].T
    return out if bias is None else out + bias


def mix_row_fuse(W, S, M, v, k, t, mix):
    U = W[:, 0:t] + S
    UD, UA = U[:, 0:k], U[:, k:2 * k]
    Wn = W.copy()
    Wn[:, 0:t] = U
    if mix:
        Wn[:, 0:k] = UD * v + UA @ M.T
    else:
        Wn[:, 0:k] = UD * v
        Wn[:, k:2 * k] = UA @ M.T + UA
    return Wn


def s2_column_forward(X, W, bias, S, e):
    out = np.dot(X, W.T)
    if bias is not None:
        out = out + bias
    return np.concatenate([out[:, 0:e] + np.dot(X, S.T), out[:, e:]], axis=1)


def s2_row_forward(X, W, bias, S, e):
    out = np.dot(X, W.T)
    if bias is not None:
        out = out + bias
    return out + np.dot(X[:, 0:e], S.T)


# ----------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------


def f32(a) -> onp.ndarray:
    """Round to float32 and come back to float64: the stored input is then exact."""
    return onp.asarray(a, dtype=onp.float64).astype(onp.float32).astype(onp.float64)


def grads_of(fn, params: dict, grad_out, check=True):
    """Autograd reverse-mode gradient of L = Σ fn(**params) ⊙ grad_out w.r.t. every param."""

    def loss(ps):
        return np.sum(fn(**ps) * grad_out)

    g = grad(loss)(params)
    if check:
        fd_check(loss, params, g)
    return g


def fd_check(loss, params, g, trials=3):
    """Central finite difference along random directions (f64). The losses are polynomials of
    degree ≤ 3 in the parameters, so the central difference is exact up to O(h²)·third derivative;
    compare with a tolerance relative to the directional derivative's scale."""
    rng = onp.random.default_rng(12345)
    for _ in range(trials):
        d = {k: rng.standard_normal(onp.shape(v)) for k, v in params.items()}
        h = 1e-5
        lp = loss({k: params[k] + h * d[k] for k in params})
        lm = loss({k: params[k] - h * d[k] for k in params})
        fd = (lp - lm) / (2 * h)
        an = sum(float(onp.sum(g[k] * d[k])) for k in params)
        scale = sum(float(onp.sum(onp.abs(g[k] * d[k]))) for k in params) + 1e-12
        assert abs(fd - an) <= 1e-7 * scale, (fd, an, scale)


def meta_str(**kw) -> dict[str, str]:
    """Metadata values: JSON values encoded as strings ("12", "true"); `op` stays a bare name."""
    m = {}
    for k, v in kw.items():
        if k == "op":
            m[k] = v
        else:
            m[k] = json.dumps(v)
    return m


def blkdiag(rng, b, p):
    """Nonzero Monarch blocks, entries U(-1,1)/√p so that M has O(1) entries."""
    return f32(rng.uniform(-1.0, 1.0, (b, p, p)) / math.sqrt(p))


def near_one(rng, k):
    return f32(rng.uniform(0.7, 1.3, k))


# ----------------------------------------------------------------------------------------------
# cases
# ----------------------------------------------------------------------------------------------


def compute_expected(op: str, k_t: dict, inp: dict, dt=onp.float64, check=True):
    """All expected tensors of one vector from its inputs (§0.1 names, without the prefix).
    dt=float64 is the golden computation (with every self-check); dt=float32 recomputes the same
    thing in single precision, used only to confirm the tolerance policy has headroom."""
    I = {n: onp.asarray(a, dtype=dt) for n, a in inp.items()}
    X, G = I["x"], I["grad_out"]
    bias = I.get("bias")
    exp = {}
    if op == "monarch":
        W1, W2 = I["blkdiag1"], I["blkdiag2"]
        out = onp.asarray(monarch_forward(X, W1, W2))
        dense = monarch_dense(W1, W2)
        if check:  # scalar loops, the §4.1 dense formula, and out = x·denseᵀ
            for r in range(X.shape[0]):
                assert onp.allclose(monarch_row_loops(X[r], W1, W2), out[r], rtol=1e-12, atol=1e-12)
            assert onp.allclose(dense, monarch_dense_formula(W1, W2), rtol=1e-12, atol=1e-12)
            assert onp.allclose(X @ dense.T, out, rtol=1e-10, atol=1e-10)
        g = grads_of(lambda x, W1, W2: monarch_forward(x, W1, W2),
                     {"x": X, "W1": W1, "W2": W2}, G, check)
        exp = {"out": out, "grad_x": g["x"], "grad_blkdiag1": g["W1"],
               "grad_blkdiag2": g["W2"], "dense": dense}
    elif op == "mix_column":
        k, t, mix = k_t["k"], k_t["t"], k_t["mix"]
        W = I["weight"]
        fwd = lambda X, S, W1, W2, v, c: mix_column_forward(X, W, bias, S, W1, W2, v, c, k, t, mix)
        P = {"X": X, "S": I["s2"], "W1": I["blkdiag1"], "W2": I["blkdiag2"],
             "v": I["mixer_vec"], "c": I["mixer_scale"]}
        out = onp.asarray(fwd(**P))
        M = monarch_dense(P["W1"], P["W2"])
        Wn, bn = mix_column_fuse(W, bias, P["S"], M, P["v"], P["c"], k, t, mix)
        if check:
            err = onp.max(onp.abs(X @ Wn.T + (0.0 if bias is None else bn) - out))
            assert err <= 1e-10, f"mix_column fused != unfused: {err}"
            FUSE_ERRS.append(err)
        g = grads_of(fwd, P, G, check)
        exp = {"out": out, "grad_x": g["X"], "grad_s2": g["S"], "grad_blkdiag1": g["W1"],
               "grad_blkdiag2": g["W2"], "grad_mixer_vec": g["v"], "grad_mixer_scale": g["c"],
               "fused_weight": Wn}
        if bias is not None:
            exp["fused_bias"] = bn
    elif op == "mix_row":
        k, t, mix = k_t["k"], k_t["t"], k_t["mix"]
        W = I["weight"]
        fwd = lambda X, S, W1, W2, v: mix_row_forward(X, W, bias, S, W1, W2, v, k, t, mix)
        P = {"X": X, "S": I["s2"], "W1": I["blkdiag1"], "W2": I["blkdiag2"], "v": I["mixer_vec"]}
        out = onp.asarray(fwd(**P))
        M = monarch_dense(P["W1"], P["W2"])
        Wn = mix_row_fuse(W, P["S"], M, P["v"], k, t, mix)
        if check:
            What = onp.asarray(mix_row_weight(W, P["S"], P["W1"], P["W2"], P["v"], k, t, mix))
            assert onp.max(onp.abs(Wn - What)) <= 1e-12
            err = onp.max(onp.abs(X @ Wn.T + (0.0 if bias is None else bias) - out))
            assert err <= 1e-10, f"mix_row fused != unfused: {err}"
            FUSE_ERRS.append(err)
            err2 = onp.max(onp.abs(mix_row_input_side(X, W, bias, P["S"], M, P["v"], k, t, mix) - out))
            assert err2 <= 1e-10, f"mix_row weight-side != input-side: {err2}"
        g = grads_of(fwd, P, G, check)
        exp = {"out": out, "grad_x": g["X"], "grad_s2": g["S"], "grad_blkdiag1": g["W1"],
               "grad_blkdiag2": g["W2"], "grad_mixer_vec": g["v"], "fused_weight": Wn}
    else:
        e = k_t["e"]
        W, S = I["weight"], I["s2"]
        if op == "s2_column":
            fwd = lambda X, S: s2_column_forward(X, W, bias, S, e)
            Wf = W.copy()
            Wf[0:e] += S  # §4.4 fusion
        else:
            fwd = lambda X, S: s2_row_forward(X, W, bias, S, e)
            Wf = W.copy()
            Wf[:, 0:e] += S
        out = onp.asarray(fwd(X, S))
        if check:
            assert onp.max(onp.abs(X @ Wf.T + (0.0 if bias is None else bias) - out)) <= 1e-10
        g = grads_of(fwd, {"X": X, "S": S}, G, check)
        exp = {"out": out, "grad_x": g["X"], "grad_s2": g["S"]}
    return exp


FUSE_ERRS: list = []


def pack(op, inp: dict, sizes: dict, input_order: list[str], expected_order: list[str]):
    exp = compute_expected(op, sizes, inp)
    tensors = [(f"input.{n}", inp[n]) for n in input_order if n in inp]
    tensors += [(f"expected.{n}", exp[n]) for n in expected_order if n in exp]
    assert len(tensors) == len(inp) + len(exp)
    return tensors


def case_monarch(name, seed, k, n, unit=None):
    rng = onp.random.default_rng(seed)
    b = find_divisor(k)
    p = k // b
    if unit == 1:
        W1 = onp.fromfunction(lambda i, a, j: 1 + 4 * i + 2 * a + j, (2, 2, 2))
        W2 = onp.fromfunction(lambda i, a, j: 10 + 4 * i + 2 * a + j, (2, 2, 2))
        x = onp.array([[1.0, 2.0, 3.0, 4.0]])[:n]
        G = f32(rng.integers(-3, 4, (n, k)))
    elif unit == 2:
        W1 = onp.fromfunction(lambda i, a, j: (9 * i + 3 * a + j) % 5 - 2, (2, 3, 3))
        W2 = onp.fromfunction(lambda i, a, j: (9 * i + 3 * a + j) % 7 - 3, (2, 3, 3))
        x = f32(rng.integers(-4, 5, (n, k)))
        G = f32(rng.integers(-3, 4, (n, k)))
    else:
        W1, W2 = blkdiag(rng, b, p), blkdiag(rng, b, p)
        x = f32(rng.standard_normal((n, k)))
        G = f32(rng.standard_normal((n, k)))
    assert W1.shape == (b, p, p)
    inp = {"x": x, "blkdiag1": W1, "blkdiag2": W2, "grad_out": G}
    tensors = pack("monarch", inp, {}, ["x", "blkdiag1", "blkdiag2", "grad_out"],
                   ["out", "grad_x", "grad_blkdiag1", "grad_blkdiag2", "dense"])
    return name, tensors, meta_str(op="monarch", k=k, nblocks=b, n=n)


MIX_IN = ["x", "weight", "bias", "s2", "blkdiag1", "blkdiag2", "mixer_vec", "mixer_scale",
          "grad_out"]
MIX_EXP = ["out", "grad_x", "grad_s2", "grad_blkdiag1", "grad_blkdiag2", "grad_mixer_vec",
           "grad_mixer_scale", "fused_weight", "fused_bias"]


def case_mix(op, seed, k, t, n_in, n_out, T, mix, bias):
    if op == "mix_column":
        assert n_out >= t >= 2 * k and k >= 1
    else:
        assert n_in >= t >= 2 * k and k >= 1
    rng = onp.random.default_rng(seed)
    b = find_divisor(k)
    p = k // b
    inp = {"x": f32(rng.standard_normal((T, n_in))),
           "weight": f32(rng.standard_normal((n_out, n_in)) / math.sqrt(n_in))}
    if bias:
        inp["bias"] = f32(rng.standard_normal(n_out))
    s2_shape = (t, n_in) if op == "mix_column" else (n_out, t)
    inp["s2"] = f32(0.5 * rng.standard_normal(s2_shape) / math.sqrt(n_in))
    inp["blkdiag1"], inp["blkdiag2"] = blkdiag(rng, b, p), blkdiag(rng, b, p)
    inp["mixer_vec"] = near_one(rng, k)
    if op == "mix_column":
        inp["mixer_scale"] = near_one(rng, k)
    inp["grad_out"] = f32(rng.standard_normal((T, n_out)))
    tensors = pack(op, inp, dict(k=k, t=t, mix=mix), MIX_IN, MIX_EXP)
    tail = f"k{k}_t{t}_nout{n_out}" if op == "mix_column" else f"k{k}_t{t}_nin{n_in}"
    name = f"{op}_{'mix' if mix else 'nomix'}_{'bias' if bias else 'nobias'}_{tail}"
    meta = meta_str(op=op, k=k, t=t, e=t - 2 * k, mix=mix, bias=bias, nblocks=b,
                    T=T, n_in=n_in, n_out=n_out)
    return name, tensors, meta


def case_s2(op, seed, e, n_in, n_out, T, bias):
    rng = onp.random.default_rng(seed)
    inp = {"x": f32(rng.standard_normal((T, n_in))),
           "weight": f32(rng.standard_normal((n_out, n_in)) / math.sqrt(n_in))}
    if bias:
        inp["bias"] = f32(rng.standard_normal(n_out))
    if op == "s2_column":
        assert 1 <= e <= n_out
        inp["s2"] = f32(0.5 * rng.standard_normal((e, n_in)) / math.sqrt(n_in))
    else:
        assert 1 <= e <= n_in
        inp["s2"] = f32(0.5 * rng.standard_normal((n_out, e)) / math.sqrt(e))
    inp["grad_out"] = f32(rng.standard_normal((T, n_out)))
    tensors = pack(op, inp, dict(e=e), ["x", "weight", "bias", "s2", "grad_out"],
                   ["out", "grad_x", "grad_s2"])
    name = f"{op}_{'bias' if bias else 'nobias'}_e{e}_nin{n_in}_nout{n_out}"
    meta = meta_str(op=op, e=e, bias=bias, T=T, n_in=n_in, n_out=n_out)
    return name, tensors, meta


# Size sets for the mix ops: (k, t, other_dim, tuned_dim, T). For mix_column the tuned dim is
# n_out (n_out ≥ t); for mix_row it is n_in (n_in ≥ t).
#   A: k=6  (b=2,p=3), t=15 > 2k, tuned dim 20 > t   (E=3, frozen=5)
#   B: k=10 (b=2,p=5), t=26 > 2k, tuned dim == t     (E=6, no frozen)
#   C: k=4  (b=2,p=2), t=8 == 2k, tuned dim == t     (no E, no frozen)
#   D: k=5  (b=1,p=5, prime), t=10 == 2k, tuned dim 14 (no E, frozen=4)
#   E: k=12 (b=3,p=4), t=27 > 2k, tuned dim 31       (E=3, frozen=4)
MIX_SIZES = {
    "A": dict(k=6, t=15, other=9, tuned=20, T=5),
    "B": dict(k=10, t=26, other=11, tuned=26, T=6),
    "C": dict(k=4, t=8, other=7, tuned=8, T=3),
    "D": dict(k=5, t=10, other=6, tuned=14, T=2),
    "E": dict(k=12, t=27, other=5, tuned=31, T=4),
}
MIX_CASES = [  # (size set, mix, bias)
    ("A", True, True), ("A", True, False), ("A", False, True), ("A", False, False),
    ("B", True, True), ("B", True, False), ("B", False, True), ("B", False, False),
    ("C", True, True), ("D", False, True), ("E", True, False),
]


def build_all():
    files = []  # (name, tensors, meta)
    # Monarch: the two spec unit tests as vectors, then random blocks.
    files.append(case_monarch("monarch_unit1_k4_n1", 101, 4, 1, unit=1))
    files.append(case_monarch("monarch_unit2_k6_n2", 102, 6, 2, unit=2))
    for seed, k, n in [(110, 4, 3), (111, 6, 5), (112, 12, 4), (113, 35, 7), (114, 49, 9),
                       (115, 7, 1), (116, 10, 6)]:
        files.append(case_monarch(f"monarch_k{k}_n{n}", seed, k, n))
    for idx, (sz, mix, bias) in enumerate(MIX_CASES):
        s = MIX_SIZES[sz]
        files.append(case_mix("mix_column", 200 + idx, s["k"], s["t"], s["other"], s["tuned"],
                              s["T"], mix, bias))
        files.append(case_mix("mix_row", 300 + idx, s["k"], s["t"], s["tuned"], s["other"],
                              s["T"], mix, bias))
    for idx, (op, e, n_in, n_out, T, bias) in enumerate([
            ("s2_column", 5, 7, 9, 4, False), ("s2_column", 4, 6, 10, 3, True),
            ("s2_row", 5, 9, 7, 4, False), ("s2_row", 6, 10, 5, 3, True)]):
        files.append(case_s2(op, 400 + idx, e, n_in, n_out, T, bias))
    return files


def f32_headroom(tensors, meta) -> float:
    """Recompute the expected tensors in float32 arithmetic and return the worst ratio
    err / allowed under the §0.1 policy (atol = 1e-4·max|want|, rtol = 1e-4). A value well below 1
    means a correct single-precision implementation passes with margin."""
    m = {k: (v if k == "op" else json.loads(v)) for k, v in meta.items()}
    inp = {n[len("input."):]: a for n, a in tensors if n.startswith("input.")}
    want = {n[len("expected."):]: a for n, a in tensors if n.startswith("expected.")}
    got = compute_expected(m["op"], m, inp, dt=onp.float32, check=False)
    worst = 0.0
    for n, w in want.items():
        w = onp.asarray(w, dtype=onp.float64)
        gg = onp.asarray(got[n], dtype=onp.float64)
        allowed = 1e-4 * onp.max(onp.abs(w)) + 1e-4 * onp.abs(w)
        worst = max(worst, float(onp.max(onp.abs(gg - w) / allowed)))
    return worst


def expected_shapes(meta: dict[str, str]) -> dict[str, tuple]:
    """Shapes every reader should derive from the metadata alone (§0.1) — checked on read-back."""
    m = {k: (v if k == "op" else json.loads(v)) for k, v in meta.items()}
    op = m["op"]
    if op == "monarch":
        k, b, n = m["k"], m["nblocks"], m["n"]
        p = k // b
        return {"input.x": (n, k), "input.blkdiag1": (b, p, p), "input.blkdiag2": (b, p, p),
                "input.grad_out": (n, k), "expected.out": (n, k), "expected.grad_x": (n, k),
                "expected.grad_blkdiag1": (b, p, p), "expected.grad_blkdiag2": (b, p, p),
                "expected.dense": (k, k)}
    T, ni, no = m["T"], m["n_in"], m["n_out"]
    sh = {"input.x": (T, ni), "input.weight": (no, ni), "input.grad_out": (T, no),
          "expected.out": (T, no), "expected.grad_x": (T, ni)}
    if m["bias"]:
        sh["input.bias"] = (no,)
    if op in ("mix_column", "mix_row"):
        k, t, b = m["k"], m["t"], m["nblocks"]
        p = k // b
        s2 = (t, ni) if op == "mix_column" else (no, t)
        sh.update({"input.s2": s2, "expected.grad_s2": s2, "input.blkdiag1": (b, p, p),
                   "input.blkdiag2": (b, p, p), "expected.grad_blkdiag1": (b, p, p),
                   "expected.grad_blkdiag2": (b, p, p), "input.mixer_vec": (k,),
                   "expected.grad_mixer_vec": (k,), "expected.fused_weight": (no, ni)})
        if op == "mix_column":
            sh.update({"input.mixer_scale": (k,), "expected.grad_mixer_scale": (k,)})
            if m["bias"]:
                sh["expected.fused_bias"] = (no,)
    else:
        e = m["e"]
        s2 = (e, ni) if op == "s2_column" else (no, e)
        sh.update({"input.s2": s2, "expected.grad_s2": s2})
    return sh


def verify_file(path: str, tensors, meta):
    with open(path, "rb") as fh:
        data = fh.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert (8 + n) % 8 == 0
    got, gmeta = st_read(data)
    assert gmeta == meta
    want_shapes = expected_shapes(meta)
    assert set(got) == set(want_shapes), (path, sorted(set(got) ^ set(want_shapes)))
    for name, arr in tensors:
        assert got[name].shape == tuple(want_shapes[name]), (path, name)
        assert onp.array_equal(got[name], onp.asarray(arr, dtype=onp.float32))
    try:
        from safetensors.numpy import load as st_load  # optional cross-check
        from safetensors import safe_open
    except ImportError:
        return False
    other = st_load(data)
    for name, arr in tensors:
        assert onp.array_equal(other[name], onp.asarray(arr, dtype=onp.float32))
    with safe_open(path, framework="numpy") as f:
        assert f.metadata() == meta
    return True


def write_bad(bad_dir: str, good_data: bytes, good_tensors, good_meta):
    os.makedirs(bad_dir, exist_ok=True)
    written = {}
    # 1. A valid file cut in half.
    written["truncated.safetensors"] = good_data[: len(good_data) // 2]
    # 2. Header length garbage: far larger than the file (and than any sane header limit).
    written["bad_header_len.safetensors"] = struct.pack("<Q", 0xFFFF_FFFF_FFFF_FF00) + good_data[8:]
    # 3. Correct length prefix, but the JSON header is malformed (unterminated object).
    (n,) = struct.unpack("<Q", good_data[:8])
    hdr = good_data[8:8 + n].rstrip(b" ")
    broken = hdr[: len(hdr) // 2]  # cut mid-header: unbalanced braces / unterminated string
    broken += b" " * ((-len(broken)) % 8)
    written["malformed_json.safetensors"] = (struct.pack("<Q", len(broken)) + broken
                                             + good_data[8 + n:])
    # 4. A structurally valid safetensors file whose expected.out has the wrong shape
    #    (n×(k−1) instead of n×k, per its metadata).
    t2 = [(nm, (a[:, :-1] if nm == "expected.out" else a)) for nm, a in good_tensors]
    written["wrong_shape.safetensors"] = st_bytes(t2, good_meta)
    for fn, data in written.items():
        with open(os.path.join(bad_dir, fn), "wb") as fh:
            fh.write(data)
    # sanity: 4 must parse, 1-3 must not
    st_read(written["wrong_shape.safetensors"])
    for fn in ("truncated.safetensors", "bad_header_len.safetensors", "malformed_json.safetensors"):
        try:
            st_read(written[fn])
        except Exception:
            pass
        else:
            raise AssertionError(f"{fn} unexpectedly parses")
    return written


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(here)
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(root, "tests", "vectors"))
    ap.add_argument("--bad", default=os.path.join(root, "tests", "vectors-bad"))
    args = ap.parse_args()

    check_monarch_unit_tests()
    files = build_all()
    os.makedirs(args.out, exist_ok=True)
    names = [f[0] for f in files]
    assert len(set(names)) == len(names), "duplicate vector names"
    # remove stale vectors that this run would not produce
    for fn in os.listdir(args.out):
        if fn.endswith(".safetensors") and fn[: -len(".safetensors")] not in names:
            os.remove(os.path.join(args.out, fn))
    used_pkg = False
    print(f"{'file':52s} {'bytes':>6s}  metadata")
    total = 0
    for name, tensors, meta in files:
        data = st_bytes(tensors, meta)
        assert len(data) < 60_000, (name, len(data))
        path = os.path.join(args.out, name + ".safetensors")
        with open(path, "wb") as fh:
            fh.write(data)
        used_pkg = verify_file(path, tensors, meta) or used_pkg
        total += len(data)
        ms = " ".join(f"{k}={v}" for k, v in meta.items() if k != "op")
        print(f"{name + '.safetensors':52s} {len(data):6d}  {ms}")
    print(f"{len(files)} vectors, {total} bytes, in {args.out}")
    print("max |fused - unfused| (f64): "
          + f"{max(FUSE_ERRS):.2e} over {len(FUSE_ERRS)} mix vectors")
    head = max((f32_headroom(t, m), n) for n, t, m in files)
    assert head[0] < 0.1, f"an f32 recompute uses {head[0]:.3f} of the tolerance ({head[1]})"
    print(f"f32 recompute vs stored expected: worst error = {head[0]:.4f} of the §0.1 "
          f"tolerance ({head[1]})")
    print("read-back via the safetensors package: " + ("yes" if used_pkg else "skipped (not installed)"))

    good = next(f for f in files if f[0] == "monarch_k6_n5")
    bad = write_bad(args.bad, st_bytes(good[1], good[2]), good[1], good[2])
    for fn, data in sorted(bad.items()):
        print(f"bad: {os.path.join(args.bad, fn)} ({len(data)} bytes)")
    import importlib.metadata as md
    print(f"python {sys.version.split()[0]}, numpy {onp.__version__}, "
          f"autograd {md.version('autograd')}")


if __name__ == "__main__":
    main()
