// Conv2D, NHWC, the generic variant: any kernel size, stride, padding and
// channel count, shapes read from the parameter block at run time (TensorFlow
// 'same' padding is resolved on the host: pad_top/pad_left are the cells
// before; cells after fall outside the input and are skipped), with bias, an
// optional residual input added, and an optional ReLU epilogue (BatchNorm is
// folded into weights and bias).
//
// One invocation computes PX = 4 horizontally neighbouring output pixels (a..d)
// for a block of CB = 16 output channels (vec4 accumulators a0..d3): every input
// load feeds 16 multiply-adds and every weight load 4. Neighbouring
// invocations take neighbouring pixel runs of the same channel block, so
// they read the same weights. Weights are laid out (kh, kw, cin, cout
// rounded up to 16) as vec4s, zero padded past cout. The accumulators are
// named, not an array: compilers that keep arrays in memory (SwiftShader)
// would otherwise spill them.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
// The block's other input when p.residual == 1, or the block's input when
// SHORTCUT (conv_shortcut.wgsl, prepended); else the input again, unread.
@group(0) @binding(5) var<storage, read> residual: array<f32>;

// The shortcut for output channels c0..c0+3 of the output pixel whose values
// start at `base`, summed as the CPU engine sums a conv (bias, then the input
// channels in order).
fn shortcut4(base: u32, c0: u32) -> vec4<f32> {
    let pixel = base / p.out_c;
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let n = pixel / (p.out_w * p.out_h);
    let x = ((n * SC_H + oy * SC_SH) * SC_W + ox * SC_SW) * SC_C;
    let row = (p.out_c + CB - 1u) / CB * 4u;
    var s = bias[SC_BIAS4 + c0 / 4u];
    var w = SC_WEIGHT4 + c0 / 4u;
    for (var ci = 0u; ci < SC_C; ci++) {
        s += residual[x + ci] * weights[w];
        w += row;
    }
    return s;
}

fn store(base: u32, c0: u32, v: vec4<f32>) {
    var y = v;
    if (SHORTCUT) {
        y += shortcut4(base, c0);
    }
    if (p.residual == 1u) {
        for (var j = 0u; j < 4u; j++) {
            if (c0 + j < p.out_c) {
                y[j] += residual[base + c0 + j];
            }
        }
    }
    if (p.act == ACT_RELU) {
        y = max(y, vec4<f32>(0.0));
    }
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j < p.out_c) {
            dst[base + c0 + j] = y[j];
        }
    }
}

// The input index of pixel `ox + j`'s tap, or NONE when it falls outside (or past out_w).
fn tap(row_base: u32, ix: i32, j: u32, ox: u32) -> u32 {
    if (ox + j >= p.out_w || ix < 0 || ix >= i32(p.in_w)) {
        return NONE;
    }
    return (row_base + u32(ix)) * p.in_c;
}

const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(WG)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let blocks = (p.out_c + CB - 1u) / CB;
    let runs = (p.out_w + PX - 1u) / PX;
    let groups = p.n * p.out_h * runs;
    let i = flat_index(gid, nwg);
    if (i >= groups * blocks) {
        return;
    }
    let g = i % groups;
    let cb = i / groups;
    let ox = (g % runs) * PX;
    let oy = (g / runs) % p.out_h;
    let n = g / (runs * p.out_h);
    let row = blocks * 4u; // vec4s per (ky, kx, ci)

    var a0 = bias[cb * 4u];
    var a1 = bias[cb * 4u + 1u];
    var a2 = bias[cb * 4u + 2u];
    var a3 = bias[cb * 4u + 3u];
    var b0 = a0; var b1 = a1; var b2 = a2; var b3 = a3;
    var c0 = a0; var c1 = a1; var c2 = a2; var c3 = a3;
    var d0 = a0; var d1 = a1; var d2 = a2; var d3 = a3;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        let row_base = (n * p.in_h + u32(iy)) * p.in_w;
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            let s = i32(p.stride_w);
            // Pixels whose tap falls outside the input (or past out_w) skip it.
            let ta = tap(row_base, ix, 0u, ox);
            let tb = tap(row_base, ix + s, 1u, ox);
            let tc = tap(row_base, ix + 2 * s, 2u, ox);
            let td = tap(row_base, ix + 3 * s, 3u, ox);
            if (ta == NONE && tb == NONE && tc == NONE && td == NONE) {
                continue;
            }
            var w = ((ky * p.k_w + kx) * p.in_c) * row + cb * 4u;
            for (var ci = 0u; ci < p.in_c; ci++) {
                let w0 = weights[w];
                let w1 = weights[w + 1u];
                let w2 = weights[w + 2u];
                let w3 = weights[w + 3u];
                if (ta != NONE) {
                    let x = src[ta + ci];
                    a0 += x * w0; a1 += x * w1; a2 += x * w2; a3 += x * w3;
                }
                if (tb != NONE) {
                    let x = src[tb + ci];
                    b0 += x * w0; b1 += x * w1; b2 += x * w2; b3 += x * w3;
                }
                if (tc != NONE) {
                    let x = src[tc + ci];
                    c0 += x * w0; c1 += x * w1; c2 += x * w2; c3 += x * w3;
                }
                if (td != NONE) {
                    let x = src[td + ci];
                    d0 += x * w0; d1 += x * w1; d2 += x * w2; d3 += x * w3;
                }
                w += row;
            }
        }
    }
    let c16 = cb * CB;
    let base = ((n * p.out_h + oy) * p.out_w + ox) * p.out_c;
    store(base, c16, a0); store(base, c16 + 4u, a1); store(base, c16 + 8u, a2); store(base, c16 + 12u, a3);
    if (ox + 1u < p.out_w) {
        let o = base + p.out_c;
        store(o, c16, b0); store(o, c16 + 4u, b1); store(o, c16 + 8u, b2); store(o, c16 + 12u, b3);
    }
    if (ox + 2u < p.out_w) {
        let o = base + 2u * p.out_c;
        store(o, c16, c0); store(o, c16 + 4u, c1); store(o, c16 + 8u, c2); store(o, c16 + 12u, c3);
    }
    if (ox + 3u < p.out_w) {
        let o = base + 3u * p.out_c;
        store(o, c16, d0); store(o, c16 + 4u, d1); store(o, c16 + 8u, d2); store(o, c16 + 12u, d3);
    }
}
