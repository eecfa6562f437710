// Conv2D, NHWC, any kernel size, stride and padding (TensorFlow 'same'
// padding is resolved on the host: pad_top/pad_left are the cells before;
// cells after fall outside the input and are skipped), with bias and an
// optional ReLU epilogue (BatchNorm is folded into weights and bias).
//
// One invocation computes one output pixel for a block of 16 output
// channels (four vec4 accumulators): each input value is loaded once per
// 16 multiply-adds. Neighbouring invocations take neighbouring pixels of
// the same channel block, so they read the same weights. Weights are laid
// out (kh, kw, cin, cout rounded up to 16) as vec4s, zero padded past cout.

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
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
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
    let row = blocks * 4u; // vec4s per (ky, kx, ci)

    var a0 = bias[cb * 4u];
    var a1 = bias[cb * 4u + 1u];
    var a2 = bias[cb * 4u + 2u];
    var a3 = bias[cb * 4u + 3u];
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let x_base = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            var w = ((ky * p.k_w + kx) * p.in_c) * row + cb * 4u;
            for (var ci = 0u; ci < p.in_c; ci++) {
                let x = src[x_base + ci];
                a0 += x * weights[w];
                a1 += x * weights[w + 1u];
                a2 += x * weights[w + 2u];
                a3 += x * weights[w + 3u];
                w += row;
            }
        }
    }
    let out_base = pixel * p.out_c;
    store(out_base, cb * 16u, a0);
    store(out_base, cb * 16u + 4u, a1);
    store(out_base, cb * 16u + 8u, a2);
    store(out_base, cb * 16u + 12u, a3);
}
