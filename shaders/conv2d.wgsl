// Conv2D, NHWC, any kernel size, stride and padding (TensorFlow 'same'
// padding is resolved on the host: pad_top/pad_left are the cells before;
// cells after fall outside the input and are skipped), with bias and an
// optional ReLU epilogue (BatchNorm is folded into weights and bias).
//
// One invocation computes two horizontally neighbouring output pixels for
// a block of 16 output channels (eight vec4 accumulators): each input value
// feeds 16 multiply-adds and each weight load 2. Neighbouring invocations
// take neighbouring pixel pairs of the same channel block, so they read
// the same weights. Weights are laid
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
    let pairs = (p.out_w + 1u) / 2u;
    let groups = p.n * p.out_h * pairs;
    let i = flat_index(gid, nwg);
    if (i >= groups * blocks) {
        return;
    }
    let g = i % groups;
    let cb = i / groups;
    let ox = (g % pairs) * 2u;
    let oy = (g / pairs) % p.out_h;
    let n = g / (pairs * p.out_h);
    let second = ox + 1u < p.out_w;
    let row = blocks * 4u; // vec4s per (ky, kx, ci)

    var a0 = bias[cb * 4u];
    var a1 = bias[cb * 4u + 1u];
    var a2 = bias[cb * 4u + 2u];
    var a3 = bias[cb * 4u + 3u];
    var b0 = a0;
    var b1 = a1;
    var b2 = a2;
    var b3 = a3;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        let row_base = (n * p.in_h + u32(iy)) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix0 = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            let ix1 = ix0 + i32(p.stride_w);
            let in0 = ix0 >= 0 && ix0 < i32(p.in_w);
            let in1 = second && ix1 >= 0 && ix1 < i32(p.in_w);
            if (!in0 && !in1) {
                continue;
            }
            // A tap outside the input reads pixel 0 and multiplies it by
            // nothing: the accumulator is left exactly as it was.
            let x0_base = select(0u, (row_base + u32(ix0)) * p.in_c, in0);
            let x1_base = select(0u, (row_base + u32(ix1)) * p.in_c, in1);
            var w = ((ky * p.k_w + kx) * p.in_c) * row + cb * 4u;
            for (var ci = 0u; ci < p.in_c; ci++) {
                let w0 = weights[w];
                let w1 = weights[w + 1u];
                let w2 = weights[w + 2u];
                let w3 = weights[w + 3u];
                if (in0) {
                    let x = src[x0_base + ci];
                    a0 += x * w0;
                    a1 += x * w1;
                    a2 += x * w2;
                    a3 += x * w3;
                }
                if (in1) {
                    let x = src[x1_base + ci];
                    b0 += x * w0;
                    b1 += x * w1;
                    b2 += x * w2;
                    b3 += x * w3;
                }
                w += row;
            }
        }
    }
    let out_base = ((n * p.out_h + oy) * p.out_w + ox) * p.out_c;
    store(out_base, cb * 16u, a0);
    store(out_base, cb * 16u + 4u, a1);
    store(out_base, cb * 16u + 8u, a2);
    store(out_base, cb * 16u + 12u, a3);
    if (second) {
        store(out_base + p.out_c, cb * 16u, b0);
        store(out_base + p.out_c, cb * 16u + 4u, b1);
        store(out_base + p.out_c, cb * 16u + 8u, b2);
        store(out_base + p.out_c, cb * 16u + 12u, b3);
    }
}
