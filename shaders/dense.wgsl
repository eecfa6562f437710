// Dense (fully connected) with bias and optional ReLU: weights (in, out),
// one invocation per (image, output unit). `softmax` normalises each row of
// `out_c` values (numerically stable: exp(x - max) / sum).

struct Params {
    n: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, k_h: u32,
    k_w: u32, stride_h: u32, stride_w: u32, pad_top: u32,
    pad_left: u32, act: u32, rows: u32, _pad1: u32,
}

const WG: u32 = 64u;
const ACT_RELU: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.out_c) {
        return;
    }
    let o = i % p.out_c;
    let n = i / p.out_c;
    var acc = bias[o];
    for (var k = 0u; k < p.in_c; k++) {
        acc += src[n * p.in_c + k] * weights[k * p.out_c + o];
    }
    if (p.act == ACT_RELU) {
        acc = max(acc, 0.0);
    }
    dst[i] = acc;
}

@compute @workgroup_size(WG)
fn softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = gid.x + gid.y * nwg.x * WG;
    if (row >= p.rows) {
        return;
    }
    let base = row * p.out_c;
    var m = src[base];
    for (var k = 1u; k < p.out_c; k++) {
        m = max(m, src[base + k]);
    }
    var sum = 0.0;
    for (var k = 0u; k < p.out_c; k++) {
        let e = exp(src[base + k] - m);
        dst[base + k] = e;
        sum += e;
    }
    for (var k = 0u; k < p.out_c; k++) {
        dst[base + k] = dst[base + k] / sum;
    }
}
