// Conv2D like conv.wgsl (same overrides, bindings, parts and epilogue), 8
// output pixels (`WIDE_PX`, a..h) × 16 channels (4 vec4s) per invocation,
// every loop over pixels, channels and vector components written out. On
// SwiftShader (Chromium's WebGPU without a GPU) this runs about 1.7× as fast
// as conv.wgsl: its JIT neither unrolls loops nor keeps a vector indexed by
// a loop counter in registers, and twice the pixels per weight load halve
// the weight loads per multiply-add. Sums in conv.wgsl's order (ky, kx, input
// channel), so the two agree bit for bit.

@compute @workgroup_size(WG)
fn conv_wide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let runs = (OUT_W + WIDE_PX - 1u) / WIDE_PX;
    let i = flat_index(gid, nwg);
    if (i >= p.n * OUT_H * runs) {
        return;
    }
    let ox = (i % runs) * WIDE_PX;
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
    var e0 = a0; var e1 = a1; var e2 = a2; var e3 = a3;
    var f0 = a0; var f1 = a1; var f2 = a2; var f3 = a3;
    var g0 = a0; var g1 = a1; var g2 = a2; var g3 = a3;
    var h0 = a0; var h1 = a1; var h2 = a2; var h3 = a3;
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
            let in_a = ix >= 0 && ix < i32(IN_W);
            let in_b = ix + 1 * s >= 0 && ix + 1 * s < i32(IN_W) && ox + 1u < OUT_W;
            let in_c = ix + 2 * s >= 0 && ix + 2 * s < i32(IN_W) && ox + 2u < OUT_W;
            let in_d = ix + 3 * s >= 0 && ix + 3 * s < i32(IN_W) && ox + 3u < OUT_W;
            let in_e = ix + 4 * s >= 0 && ix + 4 * s < i32(IN_W) && ox + 4u < OUT_W;
            let in_f = ix + 5 * s >= 0 && ix + 5 * s < i32(IN_W) && ox + 5u < OUT_W;
            let in_g = ix + 6 * s >= 0 && ix + 6 * s < i32(IN_W) && ox + 6u < OUT_W;
            let in_h = ix + 7 * s >= 0 && ix + 7 * s < i32(IN_W) && ox + 7u < OUT_W;
            var w = (ky * KW + kx) * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                let xa = input4(row + u32(ix), c4, in_a);
                let xb = input4(row + u32(ix + 1 * s), c4, in_b);
                let xc = input4(row + u32(ix + 2 * s), c4, in_c);
                let xd = input4(row + u32(ix + 3 * s), c4, in_d);
                let xe = input4(row + u32(ix + 4 * s), c4, in_e);
                let xf = input4(row + u32(ix + 5 * s), c4, in_f);
                let xg = input4(row + u32(ix + 6 * s), c4, in_g);
                let xh = input4(row + u32(ix + 7 * s), c4, in_h);
                // input channel 4 * c4 + 0
                let xw0 = weight(w + 0u); let xw1 = weight(w + 1u); let xw2 = weight(w + 2u); let xw3 = weight(w + 3u);
                a0 += xa.x * xw0; a1 += xa.x * xw1; a2 += xa.x * xw2; a3 += xa.x * xw3;
                b0 += xb.x * xw0; b1 += xb.x * xw1; b2 += xb.x * xw2; b3 += xb.x * xw3;
                c0 += xc.x * xw0; c1 += xc.x * xw1; c2 += xc.x * xw2; c3 += xc.x * xw3;
                d0 += xd.x * xw0; d1 += xd.x * xw1; d2 += xd.x * xw2; d3 += xd.x * xw3;
                e0 += xe.x * xw0; e1 += xe.x * xw1; e2 += xe.x * xw2; e3 += xe.x * xw3;
                f0 += xf.x * xw0; f1 += xf.x * xw1; f2 += xf.x * xw2; f3 += xf.x * xw3;
                g0 += xg.x * xw0; g1 += xg.x * xw1; g2 += xg.x * xw2; g3 += xg.x * xw3;
                h0 += xh.x * xw0; h1 += xh.x * xw1; h2 += xh.x * xw2; h3 += xh.x * xw3;
                w += o4;
                // input channel 4 * c4 + 1
                let yw0 = weight(w + 0u); let yw1 = weight(w + 1u); let yw2 = weight(w + 2u); let yw3 = weight(w + 3u);
                a0 += xa.y * yw0; a1 += xa.y * yw1; a2 += xa.y * yw2; a3 += xa.y * yw3;
                b0 += xb.y * yw0; b1 += xb.y * yw1; b2 += xb.y * yw2; b3 += xb.y * yw3;
                c0 += xc.y * yw0; c1 += xc.y * yw1; c2 += xc.y * yw2; c3 += xc.y * yw3;
                d0 += xd.y * yw0; d1 += xd.y * yw1; d2 += xd.y * yw2; d3 += xd.y * yw3;
                e0 += xe.y * yw0; e1 += xe.y * yw1; e2 += xe.y * yw2; e3 += xe.y * yw3;
                f0 += xf.y * yw0; f1 += xf.y * yw1; f2 += xf.y * yw2; f3 += xf.y * yw3;
                g0 += xg.y * yw0; g1 += xg.y * yw1; g2 += xg.y * yw2; g3 += xg.y * yw3;
                h0 += xh.y * yw0; h1 += xh.y * yw1; h2 += xh.y * yw2; h3 += xh.y * yw3;
                w += o4;
                // input channel 4 * c4 + 2
                let zw0 = weight(w + 0u); let zw1 = weight(w + 1u); let zw2 = weight(w + 2u); let zw3 = weight(w + 3u);
                a0 += xa.z * zw0; a1 += xa.z * zw1; a2 += xa.z * zw2; a3 += xa.z * zw3;
                b0 += xb.z * zw0; b1 += xb.z * zw1; b2 += xb.z * zw2; b3 += xb.z * zw3;
                c0 += xc.z * zw0; c1 += xc.z * zw1; c2 += xc.z * zw2; c3 += xc.z * zw3;
                d0 += xd.z * zw0; d1 += xd.z * zw1; d2 += xd.z * zw2; d3 += xd.z * zw3;
                e0 += xe.z * zw0; e1 += xe.z * zw1; e2 += xe.z * zw2; e3 += xe.z * zw3;
                f0 += xf.z * zw0; f1 += xf.z * zw1; f2 += xf.z * zw2; f3 += xf.z * zw3;
                g0 += xg.z * zw0; g1 += xg.z * zw1; g2 += xg.z * zw2; g3 += xg.z * zw3;
                h0 += xh.z * zw0; h1 += xh.z * zw1; h2 += xh.z * zw2; h3 += xh.z * zw3;
                w += o4;
                // input channel 4 * c4 + 3
                let ww0 = weight(w + 0u); let ww1 = weight(w + 1u); let ww2 = weight(w + 2u); let ww3 = weight(w + 3u);
                a0 += xa.w * ww0; a1 += xa.w * ww1; a2 += xa.w * ww2; a3 += xa.w * ww3;
                b0 += xb.w * ww0; b1 += xb.w * ww1; b2 += xb.w * ww2; b3 += xb.w * ww3;
                c0 += xc.w * ww0; c1 += xc.w * ww1; c2 += xc.w * ww2; c3 += xc.w * ww3;
                d0 += xd.w * ww0; d1 += xd.w * ww1; d2 += xd.w * ww2; d3 += xd.w * ww3;
                e0 += xe.w * ww0; e1 += xe.w * ww1; e2 += xe.w * ww2; e3 += xe.w * ww3;
                f0 += xf.w * ww0; f1 += xf.w * ww1; f2 += xf.w * ww2; f3 += xf.w * ww3;
                g0 += xg.w * ww0; g1 += xg.w * ww1; g2 += xg.w * ww2; g3 += xg.w * ww3;
                h0 += xh.w * ww0; h1 += xh.w * ww1; h2 += xh.w * ww2; h3 += xh.w * ww3;
                w += o4;
            }
        }
    }
    let out4 = OUT_C / 4u;
    let c = block * CB;
    let base = ((n * OUT_H + oy) * OUT_W + ox) * out4 + b;
    finish(base, c, a0); finish(base + 1u, c + 4u, a1); finish(base + 2u, c + 8u, a2); finish(base + 3u, c + 12u, a3);
    if (ox + 1u < OUT_W) {
        let o = base + 1u * out4;
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
    if (ox + 4u < OUT_W) {
        let o = base + 4u * out4;
        finish(o, c, e0); finish(o + 1u, c + 4u, e1); finish(o + 2u, c + 8u, e2); finish(o + 3u, c + 12u, e3);
    }
    if (ox + 5u < OUT_W) {
        let o = base + 5u * out4;
        finish(o, c, f0); finish(o + 1u, c + 4u, f1); finish(o + 2u, c + 8u, f2); finish(o + 3u, c + 12u, f3);
    }
    if (ox + 6u < OUT_W) {
        let o = base + 6u * out4;
        finish(o, c, g0); finish(o + 1u, c + 4u, g1); finish(o + 2u, c + 8u, g2); finish(o + 3u, c + 12u, g3);
    }
    if (ox + 7u < OUT_W) {
        let o = base + 7u * out4;
        finish(o, c, h0); finish(o + 1u, c + 4u, h1); finish(o + 2u, c + 8u, h2); finish(o + 3u, c + 12u, h3);
    }
}
