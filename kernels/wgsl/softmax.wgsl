// Row softmaxes (apex_core::TransformerOps), one workgroup per row, reductions
// in workgroup memory in a fixed order:
//   causal_softmax    rows of [n, S, S] in place: row i of each block becomes
//                     softmax_j(scale·s[i, j]) over j ≤ i, and 0 for j > i
//   softmax_backward  grad ← scale·P ⊙ (grad − rowsum(grad ⊙ P))
//   cross_entropy     per row of [T, V] logits with label l (−100 = ignored):
//                     loss[t] = logsumexp(row) − row[l] (0 when ignored) and, when
//                     `with_grad`, grad = grad_scale·(softmax(row) − onehot(l))
//                     (0 on ignored rows)

struct Params {
    rows: u32,
    cols: u32,
    // causal_softmax: S (block size, = cols). cross_entropy: 1 to write grad.
    extra: u32,
    pad0: u32,
    scale: f32,
    pad1: u32,
    pad2: u32,
    pad3: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
// causal_softmax: scores. softmax_backward: grad. cross_entropy: grad (or a dummy).
@group(0) @binding(1) var<storage, read_write> data: array<f32>;
// softmax_backward: probs. cross_entropy: logits.
@group(0) @binding(2) var<storage, read> input: array<f32>;
@group(0) @binding(3) var<storage, read> labels: array<i32>;
@group(0) @binding(4) var<storage, read_write> loss: array<f32>;

const WG: u32 = 64u;
const IGNORE_INDEX: i32 = -100;

var<workgroup> partial: array<f32, WG>;

fn row_of(wid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wid.x + wid.y * groups.x;
}

// Reduction of `v` over the workgroup (max when `take_max`, else sum).
fn reduce(lid: u32, v: f32, take_max: bool) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if lid < stride {
            if take_max {
                partial[lid] = max(partial[lid], partial[lid + stride]);
            } else {
                partial[lid] += partial[lid + stride];
            }
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

const NEG_BIG: f32 = -3.0e38;

@compute @workgroup_size(WG)
fn causal_softmax(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = row_of(wid, groups);
    let live = r < p.rows;
    let base = r * p.cols;
    // Entries j ≤ i are live.
    let count = select(0u, (r % p.extra) + 1u, live);
    var m = NEG_BIG;
    for (var j = lid; j < count; j += WG) {
        m = max(m, p.scale * data[base + j]);
    }
    m = reduce(lid, m, true);
    var s = 0.0;
    for (var j = lid; j < count; j += WG) {
        s += exp(p.scale * data[base + j] - m);
    }
    let inv = 1.0 / reduce(lid, s, false);
    if live {
        for (var j = lid; j < p.cols; j += WG) {
            if j < count {
                data[base + j] = exp(p.scale * data[base + j] - m) * inv;
            } else {
                data[base + j] = 0.0;
            }
        }
    }
}

@compute @workgroup_size(WG)
fn softmax_backward(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = row_of(wid, groups);
    let live = r < p.rows;
    let base = r * p.cols;
    var dot = 0.0;
    if live {
        for (var j = lid; j < p.cols; j += WG) {
            dot = fma(data[base + j], input[base + j], dot);
        }
    }
    let total = reduce(lid, dot, false);
    if live {
        for (var j = lid; j < p.cols; j += WG) {
            data[base + j] = p.scale * input[base + j] * (data[base + j] - total);
        }
    }
}

@compute @workgroup_size(WG)
fn cross_entropy(
    @builtin(local_invocation_index) lid: u32,
    @builtin(workgroup_id) wid: vec3<u32>,
    @builtin(num_workgroups) groups: vec3<u32>,
) {
    let r = row_of(wid, groups);
    var label = IGNORE_INDEX;
    if r < p.rows {
        label = labels[r];
    }
    let labelled = label != IGNORE_INDEX;
    let base = r * p.cols;
    let with_grad = p.extra != 0u;
    var m = NEG_BIG;
    if labelled {
        for (var j = lid; j < p.cols; j += WG) {
            m = max(m, input[base + j]);
        }
    }
    m = reduce(lid, m, true);
    var s = 0.0;
    if labelled {
        for (var j = lid; j < p.cols; j += WG) {
            s += exp(input[base + j] - m);
        }
    }
    let log_z = m + log(reduce(lid, s, false));
    if r >= p.rows {
        return;
    }
    if lid == 0u {
        loss[r] = select(0.0, log_z - input[base + u32(max(label, 0))], labelled);
    }
    if with_grad {
        for (var j = lid; j < p.cols; j += WG) {
            var g = 0.0;
            if labelled {
                let onehot = select(0.0, 1.0, i32(j) == label);
                g = p.scale * (exp(input[base + j] - log_z) - onehot);
            }
            data[base + j] = g;
        }
    }
}
