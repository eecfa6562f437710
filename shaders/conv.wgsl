// Conv2D, NHWC, specialised per layer: every shape is a pipeline-overridable
// constant, so the loops over taps and channels have constant trip counts and
// the compiler can unroll them and fold the index arithmetic. Inputs and
// outputs are read and written as vec4 over channels (IN_C and OUT_C are
// multiples of 4; the lowering declines other layers). The input comes
// through `input4`, which the input part prepended to this file defines: f32
// activations, or the graph's 8-bit pixels. Epilogue: bias (BN
// folded in), the residual input when RESIDUAL, then ReLU when RELU.
//
// Invocation (x, y): PX = 4 neighbouring output pixels (a..d) of one row for
// the output-channel block y (CB = 16 channels, vec4 accumulators a0..d3).
// The block comes from the workgroup id, so every invocation of a workgroup
// reads the same weights. Weights are (KH, KW, IN_C, OUT_C rounded up to CB),
// read through `weight(i)`, which the weight-storage part prepended to this
// file defines (a storage buffer, or a uniform buffer where that is faster).

override IN_H: u32;
override IN_W: u32;
override IN_C: u32;
override OUT_H: u32;
override OUT_W: u32;
override OUT_C: u32;
override KH: u32;
override KW: u32;
override SH: u32;
override SW: u32;
override PAD_TOP: u32;
override PAD_LEFT: u32;
override RELU: bool;
override RESIDUAL: bool;
// SHORTCUT and its SC_* constants: conv_shortcut.wgsl, prepended.

@group(0) @binding(0) var<uniform> p: Params;
// The bias (CONV_BIAS_VEC4S, generated: why uniform), a fused shortcut's after the conv's.
@group(0) @binding(3) var<uniform> bias: array<vec4<f32>, CONV_BIAS_VEC4S>;
// Activations are stored as `act` (f32, or f16 with --precision f16; the
// host generates the alias); arithmetic is f32.
@group(0) @binding(4) var<storage, read_write> dst: array<vec4<act>>;
// Binding 5, the block's other input when RESIDUAL or SHORTCUT (else the
// input again, unread), is read through `skip4(i)` (vec4 i, widened to f32),
// which conv_skip_storage.wgsl defines (conv_input_texture.wgsl for the
// texture kernel).

// 4 pixels (a..d) × 16 output channels (4 vec4s), for helpers that return them.
struct Acc {
    a0: vec4<f32>, a1: vec4<f32>, a2: vec4<f32>, a3: vec4<f32>,
    b0: vec4<f32>, b1: vec4<f32>, b2: vec4<f32>, b3: vec4<f32>,
    c0: vec4<f32>, c1: vec4<f32>, c2: vec4<f32>, c3: vec4<f32>,
    d0: vec4<f32>, d1: vec4<f32>, d2: vec4<f32>, d3: vec4<f32>,
}

// One input channel (its value at pixels a..d) times four weight vec4s.
fn mac(acc: ptr<function, Acc>, ea: f32, eb: f32, ec: f32, ed: f32,
       w0: vec4<f32>, w1: vec4<f32>, w2: vec4<f32>, w3: vec4<f32>) {
    (*acc).a0 += ea * w0; (*acc).a1 += ea * w1; (*acc).a2 += ea * w2; (*acc).a3 += ea * w3;
    (*acc).b0 += eb * w0; (*acc).b1 += eb * w1; (*acc).b2 += eb * w2; (*acc).b3 += eb * w3;
    (*acc).c0 += ec * w0; (*acc).c1 += ec * w1; (*acc).c2 += ec * w2; (*acc).c3 += ec * w3;
    (*acc).d0 += ed * w0; (*acc).d1 += ed * w1; (*acc).d2 += ed * w2; (*acc).d3 += ed * w3;
}

// Bias vec4s b..b+3 at all four pixels: a conv's (b from 0), or a fused
// shortcut's (SC_BIAS4 + b).
fn bias_acc(b: u32) -> Acc {
    let s0 = bias[b];
    let s1 = bias[b + 1u];
    let s2 = bias[b + 2u];
    let s3 = bias[b + 3u];
    return Acc(s0, s1, s2, s3, s0, s1, s2, s3, s0, s1, s2, s3, s0, s1, s2, s3);
}

// Shortcut input channels c4 of pixel `pixel` (of the SC_H × SC_W input), or
// zeros for a pixel past the output row.
fn shortcut_input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    return select(vec4<f32>(0.0), skip4(select(0u, pixel * (SC_C / 4u) + c4, inside)), inside);
}

// The input pixel the shortcut reads for output pixel (n, oy, ox).
fn shortcut_pixel(n: u32, oy: u32, ox: u32) -> u32 {
    return (n * SC_H + oy * SC_SH) * SC_W + ox * SC_SW;
}

// The shortcut at output pixels ox..ox+3 of row oy of image n, output vec4s
// b..b+3 (row stride o4), summed as the CPU engine sums a conv: bias, then
// the input channels in order. Pixels past the row are zero.
fn shortcut_run(n: u32, oy: u32, ox: u32, b: u32, o4: u32) -> Acc {
    var acc = bias_acc(SC_BIAS4 + b);
    let pa = shortcut_pixel(n, oy, ox);
    let ia = ox < OUT_W;
    let ib = ox + 1u < OUT_W;
    let ic = ox + 2u < OUT_W;
    let id = ox + 3u < OUT_W;
    var w = SC_WEIGHT4 + b;
    for (var c4 = 0u; c4 < SC_C / 4u; c4++) {
        let xa = shortcut_input4(pa, c4, ia);
        let xb = shortcut_input4(pa + SC_SW, c4, ib);
        let xc = shortcut_input4(pa + 2u * SC_SW, c4, ic);
        let xd = shortcut_input4(pa + 3u * SC_SW, c4, id);
        mac(&acc, xa.x, xb.x, xc.x, xd.x, weight(w), weight(w + 1u), weight(w + 2u), weight(w + 3u));
        w += o4;
        mac(&acc, xa.y, xb.y, xc.y, xd.y, weight(w), weight(w + 1u), weight(w + 2u), weight(w + 3u));
        w += o4;
        mac(&acc, xa.z, xb.z, xc.z, xd.z, weight(w), weight(w + 1u), weight(w + 2u), weight(w + 3u));
        w += o4;
        mac(&acc, xa.w, xb.w, xc.w, xd.w, weight(w), weight(w + 1u), weight(w + 2u), weight(w + 3u));
        w += o4;
    }
    return acc;
}

fn finish(index: u32, c: u32, acc: vec4<f32>) {
    if (c >= OUT_C) {
        return;
    }
    var y = acc;
    if (RESIDUAL) {
        y += skip4(index);
    }
    if (RELU) {
        y = max(y, vec4<f32>(0.0));
    }
    dst[index] = vec4<act>(y);
}

@compute @workgroup_size(WG)
fn conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let runs = (OUT_W + PX - 1u) / PX;
    let i = flat_index(gid, nwg);
    if (i >= p.n * OUT_H * runs) {
        return;
    }
    let ox = (i % runs) * PX;
    let oy = (i / runs) % OUT_H;
    let n = i / (runs * OUT_H);
    let block = wid.y;
    let o4 = (OUT_C + CB - 1u) / CB * (CB / 4u); // vec4s per weight row
    let b = block * (CB / 4u);

    var a0 = bias[b];
    var a1 = bias[b + 1u];
    var a2 = bias[b + 2u];
    var a3 = bias[b + 3u];
    var b0 = a0; var b1 = a1; var b2 = a2; var b3 = a3;
    var c0 = a0; var c1 = a1; var c2 = a2; var c3 = a3;
    var d0 = a0; var d1 = a1; var d2 = a2; var d3 = a3;
    for (var ky = 0u; ky < KH; ky++) {
        let iy = i32(oy * SH + ky) - i32(PAD_TOP);
        if (iy < 0 || iy >= i32(IN_H)) {
            continue;
        }
        let row = (n * IN_H + u32(iy)) * IN_W;
        for (var kx = 0u; kx < KW; kx++) {
            let ix = i32(ox * SW + kx) - i32(PAD_LEFT);
            let s = i32(SW);
            // A pixel whose tap falls outside the input (or past OUT_W) reads zeros.
            let ia = ix >= 0 && ix < i32(IN_W);
            let ib = ix + s >= 0 && ix + s < i32(IN_W) && ox + 1u < OUT_W;
            let ic = ix + 2 * s >= 0 && ix + 2 * s < i32(IN_W) && ox + 2u < OUT_W;
            let id = ix + 3 * s >= 0 && ix + 3 * s < i32(IN_W) && ox + 3u < OUT_W;
            // Pixel indices; one outside the input is never read (`input4`).
            let pa = row + u32(ix);
            let pb = row + u32(ix + s);
            let pc = row + u32(ix + 2 * s);
            let pd = row + u32(ix + 3 * s);
            var w = (ky * KW + kx) * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                let xa = input4(pa, c4, ia);
                let xb = input4(pb, c4, ib);
                let xc = input4(pc, c4, ic);
                let xd = input4(pd, c4, id);
                for (var j = 0u; j < 4u; j++) {
                    let w0 = weight(w);
                    let w1 = weight(w + 1u);
                    let w2 = weight(w + 2u);
                    let w3 = weight(w + 3u);
                    a0 += xa[j] * w0; a1 += xa[j] * w1; a2 += xa[j] * w2; a3 += xa[j] * w3;
                    b0 += xb[j] * w0; b1 += xb[j] * w1; b2 += xb[j] * w2; b3 += xb[j] * w3;
                    c0 += xc[j] * w0; c1 += xc[j] * w1; c2 += xc[j] * w2; c3 += xc[j] * w3;
                    d0 += xd[j] * w0; d1 += xd[j] * w1; d2 += xd[j] * w2; d3 += xd[j] * w3;
                    w += o4;
                }
            }
        }
    }
    if (SHORTCUT) {
        // The shortcut's own sum, then added: the CPU engine's numbers.
        let s = shortcut_run(n, oy, ox, b, o4);
        a0 += s.a0; a1 += s.a1; a2 += s.a2; a3 += s.a3;
        b0 += s.b0; b1 += s.b1; b2 += s.b2; b3 += s.b3;
        c0 += s.c0; c1 += s.c1; c2 += s.c2; c3 += s.c3;
        d0 += s.d0; d1 += s.d1; d2 += s.d2; d3 += s.d3;
    }
    let out4 = OUT_C / 4u;
    let c = block * CB;
    let base = ((n * OUT_H + oy) * OUT_W + ox) * out4 + b;
    finish(base, c, a0); finish(base + 1u, c + 4u, a1); finish(base + 2u, c + 8u, a2); finish(base + 3u, c + 12u, a3);
    if (ox + 1u < OUT_W) {
        let o = base + out4;
        finish(o, c, b0); finish(o + 1u, c + 4u, b1); finish(o + 2u, c + 8u, b2); finish(o + 3u, c + 12u, b3);
    }
    if (ox + 2u < OUT_W) {
        let o = base + 2u * out4;
        finish(o, c, c0); finish(o + 1u, c + 4u, c1); finish(o + 2u, c + 8u, c2); finish(o + 3u, c + 12u, c3);
    }
    if (ox + 3u < OUT_W) {
        let o = base + 3u * out4;
        finish(o, c, d0); finish(o + 1u, c + 4u, d1); finish(o + 2u, c + 8u, d2); finish(o + 3u, c + 12u, d3);
    }
}
