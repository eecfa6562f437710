// Pointwise Conv2D (1x1 kernel), NHWC, any stride: the ResNet shortcut
// projection (1x1, stride 2, no BatchNorm). A 1x1 window never needs
// padding under either 'same' or 'valid', so there is none to apply.
// Layout and blocking as in conv2d.wgsl: 16 output channels per invocation.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn store(base: u32, c0: u32, v: vec4<f32>) {
    var y = v;
    if (p.act == ACT_RELU) {
        y = max(y, vec4<f32>(0.0));
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.out_c) {
            dst[base + c0 + j] = y[j];
        }
    }
}

@compute @workgroup_size(WG)
fn conv1x1(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.out_c + 15u) / 16u;
    let pixels = p.n * p.out_h * p.out_w;
    let i = flat_index(gid, nwg);
    if (i >= pixels * blocks) {
        return;
    }
    let pixel = i % pixels;
    let cb = i / pixels;
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let n = pixel / (p.out_w * p.out_h);
    let row = blocks * 4u;

    var a0 = bias[cb * 4u];
    var a1 = bias[cb * 4u + 1u];
    var a2 = bias[cb * 4u + 2u];
    var a3 = bias[cb * 4u + 3u];
    let x_base = ((n * p.in_h + oy * p.stride_h) * p.in_w + ox * p.stride_w) * p.in_c;
    var w = cb * 4u;
    for (var ci = 0u; ci < p.in_c; ci++) {
        let x = src[x_base + ci];
        a0 += x * weights[w];
        a1 += x * weights[w + 1u];
        a2 += x * weights[w + 2u];
        a3 += x * weights[w + 3u];
        w += row;
    }
    let out_base = pixel * p.out_c;
    store(out_base, cb * 16u, a0);
    store(out_base, cb * 16u + 4u, a1);
    store(out_base, cb * 16u + 8u, a2);
    store(out_base, cb * 16u + 12u, a3);
}
