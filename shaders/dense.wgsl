// Dense (fully connected) with bias and optional ReLU: weights (in, out),
// one invocation per (image, output unit). `softmax` normalises each row of
// `out_c` values (numerically stable: exp(x - max) / sum).

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
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
    let row = flat_index(gid, nwg);
    if (row >= p.len) {
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
