// Conv2D like conv.wgsl (same overrides, bindings, parts and epilogue), 8
// output pixels (`WIDE_PX`, a..h) × 16 channels (4 vec4s) per invocation,
// every loop over pixels, channels and vector components written out:
// SwiftShader's JIT (Chromium's WebGPU without a GPU) neither unrolls loops
// nor keeps a vector indexed by a loop counter in registers, and 8 pixels per
// weight load halve the weight loads per multiply-add. 3x3 stride-1 convs
// padded 1 left read each input row once for all three kx taps (10 pixel
// loads per 4 input channels instead of 24) and so sum per kernel row 4
// input channels at a time over the taps, as conv_subgroup.wgsl does: within
// ~1e-6 relative of the CPU's order; 3x3 stride-2 convs padded 0 left read
// each row once too (17 loads instead of 24). Others sum in conv.wgsl's order.
// The 3x3 stride-1 convs take two output rows per invocation (`WIDE_ROWS`):
// on SwiftShader a weight sample is a call into its sampler (~half of all
// its instructions in ResNet8), and each then serves 16 pixels, not 8.

// Output rows per invocation: 2 for the 3x3 stride-1 convs padded 1 left
// and as wide as their input (the lowering sets it; their only path), else
// 1. The second row's accumulators are a4..h7 (so that path's loop over
// input vec4s is k4, not c4).
override WIDE_ROWS: u32 = 1u;

@compute @workgroup_size(WG)
fn conv_wide(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let runs = (OUT_W + WIDE_PX - 1u) / WIDE_PX;
    let row_groups = (OUT_H + WIDE_ROWS - 1u) / WIDE_ROWS;
    let i = flat_index(gid, nwg);
    if (i >= p.n * row_groups * runs) {
        return;
    }
    let ox = (i % runs) * WIDE_PX;
    let oy = (i / runs) % row_groups * WIDE_ROWS;
    let n = i / (runs * row_groups);
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
    var a4 = a0; var a5 = a1; var a6 = a2; var a7 = a3;
    var b4 = a0; var b5 = a1; var b6 = a2; var b7 = a3;
    var c4 = a0; var c5 = a1; var c6 = a2; var c7 = a3;
    var d4 = a0; var d5 = a1; var d6 = a2; var d7 = a3;
    var e4 = a0; var e5 = a1; var e6 = a2; var e7 = a3;
    var f4 = a0; var f5 = a1; var f6 = a2; var f7 = a3;
    var g4 = a0; var g5 = a1; var g6 = a2; var g7 = a3;
    var h4 = a0; var h5 = a1; var h6 = a2; var h7 = a3;
    if (WIDE_ROWS == 2u) {
        // Two output rows (oy, oy + 1) of the 3x3 stride-1 convs padded 1 left:
        // each weight sample serves 16 pixels. Row oy + 1 at tap ky reads input
        // row oy + ky - PAD_TOP + 1; each row's pixels sum as in the one-row path.
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy + ky) - i32(PAD_TOP);
            let top = iy >= 0 && iy < i32(IN_H);
            let bottom = iy + 1 >= 0 && iy + 1 < i32(IN_H) && oy + 1u < OUT_H;
            if (!top && !bottom) {
                continue;
            }
            let row = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + ox;
            let row1 = (n * IN_H + u32(clamp(iy + 1, 0, i32(IN_H) - 1))) * IN_W + ox;
            for (var k4 = 0u; k4 < IN_C / 4u; k4++) {
                let xl = input4(row - 1u, k4, top && ox > 0u);
                let xa = input4(row + 0u, k4, top);
                let xb = input4(row + 1u, k4, top && ox + 1u < IN_W);
                let xc = input4(row + 2u, k4, top && ox + 2u < IN_W);
                let xd = input4(row + 3u, k4, top && ox + 3u < IN_W);
                let xe = input4(row + 4u, k4, top && ox + 4u < IN_W);
                let xf = input4(row + 5u, k4, top && ox + 5u < IN_W);
                let xg = input4(row + 6u, k4, top && ox + 6u < IN_W);
                let xh = input4(row + 7u, k4, top && ox + 7u < IN_W);
                let xr = input4(row + 8u, k4, top && ox + 8u < IN_W);
                let yl = input4(row1 - 1u, k4, bottom && ox > 0u);
                let ya = input4(row1 + 0u, k4, bottom);
                let yb = input4(row1 + 1u, k4, bottom && ox + 1u < IN_W);
                let yc = input4(row1 + 2u, k4, bottom && ox + 2u < IN_W);
                let yd = input4(row1 + 3u, k4, bottom && ox + 3u < IN_W);
                let ye = input4(row1 + 4u, k4, bottom && ox + 4u < IN_W);
                let yf = input4(row1 + 5u, k4, bottom && ox + 5u < IN_W);
                let yg = input4(row1 + 6u, k4, bottom && ox + 6u < IN_W);
                let yh = input4(row1 + 7u, k4, bottom && ox + 7u < IN_W);
                let yr = input4(row1 + 8u, k4, bottom && ox + 8u < IN_W);
                var w0 = ((ky * 3u + 0u) * IN_C + k4 * 4u) * o4 + b;
                let x0w0 = weight(w0 + 0u); let x0w1 = weight(w0 + 1u); let x0w2 = weight(w0 + 2u); let x0w3 = weight(w0 + 3u);
                a0 += xl.x * x0w0; a1 += xl.x * x0w1; a2 += xl.x * x0w2; a3 += xl.x * x0w3;
                b0 += xa.x * x0w0; b1 += xa.x * x0w1; b2 += xa.x * x0w2; b3 += xa.x * x0w3;
                c0 += xb.x * x0w0; c1 += xb.x * x0w1; c2 += xb.x * x0w2; c3 += xb.x * x0w3;
                d0 += xc.x * x0w0; d1 += xc.x * x0w1; d2 += xc.x * x0w2; d3 += xc.x * x0w3;
                e0 += xd.x * x0w0; e1 += xd.x * x0w1; e2 += xd.x * x0w2; e3 += xd.x * x0w3;
                f0 += xe.x * x0w0; f1 += xe.x * x0w1; f2 += xe.x * x0w2; f3 += xe.x * x0w3;
                g0 += xf.x * x0w0; g1 += xf.x * x0w1; g2 += xf.x * x0w2; g3 += xf.x * x0w3;
                h0 += xg.x * x0w0; h1 += xg.x * x0w1; h2 += xg.x * x0w2; h3 += xg.x * x0w3;
                a4 += yl.x * x0w0; a5 += yl.x * x0w1; a6 += yl.x * x0w2; a7 += yl.x * x0w3;
                b4 += ya.x * x0w0; b5 += ya.x * x0w1; b6 += ya.x * x0w2; b7 += ya.x * x0w3;
                c4 += yb.x * x0w0; c5 += yb.x * x0w1; c6 += yb.x * x0w2; c7 += yb.x * x0w3;
                d4 += yc.x * x0w0; d5 += yc.x * x0w1; d6 += yc.x * x0w2; d7 += yc.x * x0w3;
                e4 += yd.x * x0w0; e5 += yd.x * x0w1; e6 += yd.x * x0w2; e7 += yd.x * x0w3;
                f4 += ye.x * x0w0; f5 += ye.x * x0w1; f6 += ye.x * x0w2; f7 += ye.x * x0w3;
                g4 += yf.x * x0w0; g5 += yf.x * x0w1; g6 += yf.x * x0w2; g7 += yf.x * x0w3;
                h4 += yg.x * x0w0; h5 += yg.x * x0w1; h6 += yg.x * x0w2; h7 += yg.x * x0w3;
                w0 += o4;
                let y0w0 = weight(w0 + 0u); let y0w1 = weight(w0 + 1u); let y0w2 = weight(w0 + 2u); let y0w3 = weight(w0 + 3u);
                a0 += xl.y * y0w0; a1 += xl.y * y0w1; a2 += xl.y * y0w2; a3 += xl.y * y0w3;
                b0 += xa.y * y0w0; b1 += xa.y * y0w1; b2 += xa.y * y0w2; b3 += xa.y * y0w3;
                c0 += xb.y * y0w0; c1 += xb.y * y0w1; c2 += xb.y * y0w2; c3 += xb.y * y0w3;
                d0 += xc.y * y0w0; d1 += xc.y * y0w1; d2 += xc.y * y0w2; d3 += xc.y * y0w3;
                e0 += xd.y * y0w0; e1 += xd.y * y0w1; e2 += xd.y * y0w2; e3 += xd.y * y0w3;
                f0 += xe.y * y0w0; f1 += xe.y * y0w1; f2 += xe.y * y0w2; f3 += xe.y * y0w3;
                g0 += xf.y * y0w0; g1 += xf.y * y0w1; g2 += xf.y * y0w2; g3 += xf.y * y0w3;
                h0 += xg.y * y0w0; h1 += xg.y * y0w1; h2 += xg.y * y0w2; h3 += xg.y * y0w3;
                a4 += yl.y * y0w0; a5 += yl.y * y0w1; a6 += yl.y * y0w2; a7 += yl.y * y0w3;
                b4 += ya.y * y0w0; b5 += ya.y * y0w1; b6 += ya.y * y0w2; b7 += ya.y * y0w3;
                c4 += yb.y * y0w0; c5 += yb.y * y0w1; c6 += yb.y * y0w2; c7 += yb.y * y0w3;
                d4 += yc.y * y0w0; d5 += yc.y * y0w1; d6 += yc.y * y0w2; d7 += yc.y * y0w3;
                e4 += yd.y * y0w0; e5 += yd.y * y0w1; e6 += yd.y * y0w2; e7 += yd.y * y0w3;
                f4 += ye.y * y0w0; f5 += ye.y * y0w1; f6 += ye.y * y0w2; f7 += ye.y * y0w3;
                g4 += yf.y * y0w0; g5 += yf.y * y0w1; g6 += yf.y * y0w2; g7 += yf.y * y0w3;
                h4 += yg.y * y0w0; h5 += yg.y * y0w1; h6 += yg.y * y0w2; h7 += yg.y * y0w3;
                w0 += o4;
                let z0w0 = weight(w0 + 0u); let z0w1 = weight(w0 + 1u); let z0w2 = weight(w0 + 2u); let z0w3 = weight(w0 + 3u);
                a0 += xl.z * z0w0; a1 += xl.z * z0w1; a2 += xl.z * z0w2; a3 += xl.z * z0w3;
                b0 += xa.z * z0w0; b1 += xa.z * z0w1; b2 += xa.z * z0w2; b3 += xa.z * z0w3;
                c0 += xb.z * z0w0; c1 += xb.z * z0w1; c2 += xb.z * z0w2; c3 += xb.z * z0w3;
                d0 += xc.z * z0w0; d1 += xc.z * z0w1; d2 += xc.z * z0w2; d3 += xc.z * z0w3;
                e0 += xd.z * z0w0; e1 += xd.z * z0w1; e2 += xd.z * z0w2; e3 += xd.z * z0w3;
                f0 += xe.z * z0w0; f1 += xe.z * z0w1; f2 += xe.z * z0w2; f3 += xe.z * z0w3;
                g0 += xf.z * z0w0; g1 += xf.z * z0w1; g2 += xf.z * z0w2; g3 += xf.z * z0w3;
                h0 += xg.z * z0w0; h1 += xg.z * z0w1; h2 += xg.z * z0w2; h3 += xg.z * z0w3;
                a4 += yl.z * z0w0; a5 += yl.z * z0w1; a6 += yl.z * z0w2; a7 += yl.z * z0w3;
                b4 += ya.z * z0w0; b5 += ya.z * z0w1; b6 += ya.z * z0w2; b7 += ya.z * z0w3;
                c4 += yb.z * z0w0; c5 += yb.z * z0w1; c6 += yb.z * z0w2; c7 += yb.z * z0w3;
                d4 += yc.z * z0w0; d5 += yc.z * z0w1; d6 += yc.z * z0w2; d7 += yc.z * z0w3;
                e4 += yd.z * z0w0; e5 += yd.z * z0w1; e6 += yd.z * z0w2; e7 += yd.z * z0w3;
                f4 += ye.z * z0w0; f5 += ye.z * z0w1; f6 += ye.z * z0w2; f7 += ye.z * z0w3;
                g4 += yf.z * z0w0; g5 += yf.z * z0w1; g6 += yf.z * z0w2; g7 += yf.z * z0w3;
                h4 += yg.z * z0w0; h5 += yg.z * z0w1; h6 += yg.z * z0w2; h7 += yg.z * z0w3;
                w0 += o4;
                let w0w0 = weight(w0 + 0u); let w0w1 = weight(w0 + 1u); let w0w2 = weight(w0 + 2u); let w0w3 = weight(w0 + 3u);
                a0 += xl.w * w0w0; a1 += xl.w * w0w1; a2 += xl.w * w0w2; a3 += xl.w * w0w3;
                b0 += xa.w * w0w0; b1 += xa.w * w0w1; b2 += xa.w * w0w2; b3 += xa.w * w0w3;
                c0 += xb.w * w0w0; c1 += xb.w * w0w1; c2 += xb.w * w0w2; c3 += xb.w * w0w3;
                d0 += xc.w * w0w0; d1 += xc.w * w0w1; d2 += xc.w * w0w2; d3 += xc.w * w0w3;
                e0 += xd.w * w0w0; e1 += xd.w * w0w1; e2 += xd.w * w0w2; e3 += xd.w * w0w3;
                f0 += xe.w * w0w0; f1 += xe.w * w0w1; f2 += xe.w * w0w2; f3 += xe.w * w0w3;
                g0 += xf.w * w0w0; g1 += xf.w * w0w1; g2 += xf.w * w0w2; g3 += xf.w * w0w3;
                h0 += xg.w * w0w0; h1 += xg.w * w0w1; h2 += xg.w * w0w2; h3 += xg.w * w0w3;
                a4 += yl.w * w0w0; a5 += yl.w * w0w1; a6 += yl.w * w0w2; a7 += yl.w * w0w3;
                b4 += ya.w * w0w0; b5 += ya.w * w0w1; b6 += ya.w * w0w2; b7 += ya.w * w0w3;
                c4 += yb.w * w0w0; c5 += yb.w * w0w1; c6 += yb.w * w0w2; c7 += yb.w * w0w3;
                d4 += yc.w * w0w0; d5 += yc.w * w0w1; d6 += yc.w * w0w2; d7 += yc.w * w0w3;
                e4 += yd.w * w0w0; e5 += yd.w * w0w1; e6 += yd.w * w0w2; e7 += yd.w * w0w3;
                f4 += ye.w * w0w0; f5 += ye.w * w0w1; f6 += ye.w * w0w2; f7 += ye.w * w0w3;
                g4 += yf.w * w0w0; g5 += yf.w * w0w1; g6 += yf.w * w0w2; g7 += yf.w * w0w3;
                h4 += yg.w * w0w0; h5 += yg.w * w0w1; h6 += yg.w * w0w2; h7 += yg.w * w0w3;
                w0 += o4;
                var w1 = ((ky * 3u + 1u) * IN_C + k4 * 4u) * o4 + b;
                let x1w0 = weight(w1 + 0u); let x1w1 = weight(w1 + 1u); let x1w2 = weight(w1 + 2u); let x1w3 = weight(w1 + 3u);
                a0 += xa.x * x1w0; a1 += xa.x * x1w1; a2 += xa.x * x1w2; a3 += xa.x * x1w3;
                b0 += xb.x * x1w0; b1 += xb.x * x1w1; b2 += xb.x * x1w2; b3 += xb.x * x1w3;
                c0 += xc.x * x1w0; c1 += xc.x * x1w1; c2 += xc.x * x1w2; c3 += xc.x * x1w3;
                d0 += xd.x * x1w0; d1 += xd.x * x1w1; d2 += xd.x * x1w2; d3 += xd.x * x1w3;
                e0 += xe.x * x1w0; e1 += xe.x * x1w1; e2 += xe.x * x1w2; e3 += xe.x * x1w3;
                f0 += xf.x * x1w0; f1 += xf.x * x1w1; f2 += xf.x * x1w2; f3 += xf.x * x1w3;
                g0 += xg.x * x1w0; g1 += xg.x * x1w1; g2 += xg.x * x1w2; g3 += xg.x * x1w3;
                h0 += xh.x * x1w0; h1 += xh.x * x1w1; h2 += xh.x * x1w2; h3 += xh.x * x1w3;
                a4 += ya.x * x1w0; a5 += ya.x * x1w1; a6 += ya.x * x1w2; a7 += ya.x * x1w3;
                b4 += yb.x * x1w0; b5 += yb.x * x1w1; b6 += yb.x * x1w2; b7 += yb.x * x1w3;
                c4 += yc.x * x1w0; c5 += yc.x * x1w1; c6 += yc.x * x1w2; c7 += yc.x * x1w3;
                d4 += yd.x * x1w0; d5 += yd.x * x1w1; d6 += yd.x * x1w2; d7 += yd.x * x1w3;
                e4 += ye.x * x1w0; e5 += ye.x * x1w1; e6 += ye.x * x1w2; e7 += ye.x * x1w3;
                f4 += yf.x * x1w0; f5 += yf.x * x1w1; f6 += yf.x * x1w2; f7 += yf.x * x1w3;
                g4 += yg.x * x1w0; g5 += yg.x * x1w1; g6 += yg.x * x1w2; g7 += yg.x * x1w3;
                h4 += yh.x * x1w0; h5 += yh.x * x1w1; h6 += yh.x * x1w2; h7 += yh.x * x1w3;
                w1 += o4;
                let y1w0 = weight(w1 + 0u); let y1w1 = weight(w1 + 1u); let y1w2 = weight(w1 + 2u); let y1w3 = weight(w1 + 3u);
                a0 += xa.y * y1w0; a1 += xa.y * y1w1; a2 += xa.y * y1w2; a3 += xa.y * y1w3;
                b0 += xb.y * y1w0; b1 += xb.y * y1w1; b2 += xb.y * y1w2; b3 += xb.y * y1w3;
                c0 += xc.y * y1w0; c1 += xc.y * y1w1; c2 += xc.y * y1w2; c3 += xc.y * y1w3;
                d0 += xd.y * y1w0; d1 += xd.y * y1w1; d2 += xd.y * y1w2; d3 += xd.y * y1w3;
                e0 += xe.y * y1w0; e1 += xe.y * y1w1; e2 += xe.y * y1w2; e3 += xe.y * y1w3;
                f0 += xf.y * y1w0; f1 += xf.y * y1w1; f2 += xf.y * y1w2; f3 += xf.y * y1w3;
                g0 += xg.y * y1w0; g1 += xg.y * y1w1; g2 += xg.y * y1w2; g3 += xg.y * y1w3;
                h0 += xh.y * y1w0; h1 += xh.y * y1w1; h2 += xh.y * y1w2; h3 += xh.y * y1w3;
                a4 += ya.y * y1w0; a5 += ya.y * y1w1; a6 += ya.y * y1w2; a7 += ya.y * y1w3;
                b4 += yb.y * y1w0; b5 += yb.y * y1w1; b6 += yb.y * y1w2; b7 += yb.y * y1w3;
                c4 += yc.y * y1w0; c5 += yc.y * y1w1; c6 += yc.y * y1w2; c7 += yc.y * y1w3;
                d4 += yd.y * y1w0; d5 += yd.y * y1w1; d6 += yd.y * y1w2; d7 += yd.y * y1w3;
                e4 += ye.y * y1w0; e5 += ye.y * y1w1; e6 += ye.y * y1w2; e7 += ye.y * y1w3;
                f4 += yf.y * y1w0; f5 += yf.y * y1w1; f6 += yf.y * y1w2; f7 += yf.y * y1w3;
                g4 += yg.y * y1w0; g5 += yg.y * y1w1; g6 += yg.y * y1w2; g7 += yg.y * y1w3;
                h4 += yh.y * y1w0; h5 += yh.y * y1w1; h6 += yh.y * y1w2; h7 += yh.y * y1w3;
                w1 += o4;
                let z1w0 = weight(w1 + 0u); let z1w1 = weight(w1 + 1u); let z1w2 = weight(w1 + 2u); let z1w3 = weight(w1 + 3u);
                a0 += xa.z * z1w0; a1 += xa.z * z1w1; a2 += xa.z * z1w2; a3 += xa.z * z1w3;
                b0 += xb.z * z1w0; b1 += xb.z * z1w1; b2 += xb.z * z1w2; b3 += xb.z * z1w3;
                c0 += xc.z * z1w0; c1 += xc.z * z1w1; c2 += xc.z * z1w2; c3 += xc.z * z1w3;
                d0 += xd.z * z1w0; d1 += xd.z * z1w1; d2 += xd.z * z1w2; d3 += xd.z * z1w3;
                e0 += xe.z * z1w0; e1 += xe.z * z1w1; e2 += xe.z * z1w2; e3 += xe.z * z1w3;
                f0 += xf.z * z1w0; f1 += xf.z * z1w1; f2 += xf.z * z1w2; f3 += xf.z * z1w3;
                g0 += xg.z * z1w0; g1 += xg.z * z1w1; g2 += xg.z * z1w2; g3 += xg.z * z1w3;
                h0 += xh.z * z1w0; h1 += xh.z * z1w1; h2 += xh.z * z1w2; h3 += xh.z * z1w3;
                a4 += ya.z * z1w0; a5 += ya.z * z1w1; a6 += ya.z * z1w2; a7 += ya.z * z1w3;
                b4 += yb.z * z1w0; b5 += yb.z * z1w1; b6 += yb.z * z1w2; b7 += yb.z * z1w3;
                c4 += yc.z * z1w0; c5 += yc.z * z1w1; c6 += yc.z * z1w2; c7 += yc.z * z1w3;
                d4 += yd.z * z1w0; d5 += yd.z * z1w1; d6 += yd.z * z1w2; d7 += yd.z * z1w3;
                e4 += ye.z * z1w0; e5 += ye.z * z1w1; e6 += ye.z * z1w2; e7 += ye.z * z1w3;
                f4 += yf.z * z1w0; f5 += yf.z * z1w1; f6 += yf.z * z1w2; f7 += yf.z * z1w3;
                g4 += yg.z * z1w0; g5 += yg.z * z1w1; g6 += yg.z * z1w2; g7 += yg.z * z1w3;
                h4 += yh.z * z1w0; h5 += yh.z * z1w1; h6 += yh.z * z1w2; h7 += yh.z * z1w3;
                w1 += o4;
                let w1w0 = weight(w1 + 0u); let w1w1 = weight(w1 + 1u); let w1w2 = weight(w1 + 2u); let w1w3 = weight(w1 + 3u);
                a0 += xa.w * w1w0; a1 += xa.w * w1w1; a2 += xa.w * w1w2; a3 += xa.w * w1w3;
                b0 += xb.w * w1w0; b1 += xb.w * w1w1; b2 += xb.w * w1w2; b3 += xb.w * w1w3;
                c0 += xc.w * w1w0; c1 += xc.w * w1w1; c2 += xc.w * w1w2; c3 += xc.w * w1w3;
                d0 += xd.w * w1w0; d1 += xd.w * w1w1; d2 += xd.w * w1w2; d3 += xd.w * w1w3;
                e0 += xe.w * w1w0; e1 += xe.w * w1w1; e2 += xe.w * w1w2; e3 += xe.w * w1w3;
                f0 += xf.w * w1w0; f1 += xf.w * w1w1; f2 += xf.w * w1w2; f3 += xf.w * w1w3;
                g0 += xg.w * w1w0; g1 += xg.w * w1w1; g2 += xg.w * w1w2; g3 += xg.w * w1w3;
                h0 += xh.w * w1w0; h1 += xh.w * w1w1; h2 += xh.w * w1w2; h3 += xh.w * w1w3;
                a4 += ya.w * w1w0; a5 += ya.w * w1w1; a6 += ya.w * w1w2; a7 += ya.w * w1w3;
                b4 += yb.w * w1w0; b5 += yb.w * w1w1; b6 += yb.w * w1w2; b7 += yb.w * w1w3;
                c4 += yc.w * w1w0; c5 += yc.w * w1w1; c6 += yc.w * w1w2; c7 += yc.w * w1w3;
                d4 += yd.w * w1w0; d5 += yd.w * w1w1; d6 += yd.w * w1w2; d7 += yd.w * w1w3;
                e4 += ye.w * w1w0; e5 += ye.w * w1w1; e6 += ye.w * w1w2; e7 += ye.w * w1w3;
                f4 += yf.w * w1w0; f5 += yf.w * w1w1; f6 += yf.w * w1w2; f7 += yf.w * w1w3;
                g4 += yg.w * w1w0; g5 += yg.w * w1w1; g6 += yg.w * w1w2; g7 += yg.w * w1w3;
                h4 += yh.w * w1w0; h5 += yh.w * w1w1; h6 += yh.w * w1w2; h7 += yh.w * w1w3;
                w1 += o4;
                var w2 = ((ky * 3u + 2u) * IN_C + k4 * 4u) * o4 + b;
                let x2w0 = weight(w2 + 0u); let x2w1 = weight(w2 + 1u); let x2w2 = weight(w2 + 2u); let x2w3 = weight(w2 + 3u);
                a0 += xb.x * x2w0; a1 += xb.x * x2w1; a2 += xb.x * x2w2; a3 += xb.x * x2w3;
                b0 += xc.x * x2w0; b1 += xc.x * x2w1; b2 += xc.x * x2w2; b3 += xc.x * x2w3;
                c0 += xd.x * x2w0; c1 += xd.x * x2w1; c2 += xd.x * x2w2; c3 += xd.x * x2w3;
                d0 += xe.x * x2w0; d1 += xe.x * x2w1; d2 += xe.x * x2w2; d3 += xe.x * x2w3;
                e0 += xf.x * x2w0; e1 += xf.x * x2w1; e2 += xf.x * x2w2; e3 += xf.x * x2w3;
                f0 += xg.x * x2w0; f1 += xg.x * x2w1; f2 += xg.x * x2w2; f3 += xg.x * x2w3;
                g0 += xh.x * x2w0; g1 += xh.x * x2w1; g2 += xh.x * x2w2; g3 += xh.x * x2w3;
                h0 += xr.x * x2w0; h1 += xr.x * x2w1; h2 += xr.x * x2w2; h3 += xr.x * x2w3;
                a4 += yb.x * x2w0; a5 += yb.x * x2w1; a6 += yb.x * x2w2; a7 += yb.x * x2w3;
                b4 += yc.x * x2w0; b5 += yc.x * x2w1; b6 += yc.x * x2w2; b7 += yc.x * x2w3;
                c4 += yd.x * x2w0; c5 += yd.x * x2w1; c6 += yd.x * x2w2; c7 += yd.x * x2w3;
                d4 += ye.x * x2w0; d5 += ye.x * x2w1; d6 += ye.x * x2w2; d7 += ye.x * x2w3;
                e4 += yf.x * x2w0; e5 += yf.x * x2w1; e6 += yf.x * x2w2; e7 += yf.x * x2w3;
                f4 += yg.x * x2w0; f5 += yg.x * x2w1; f6 += yg.x * x2w2; f7 += yg.x * x2w3;
                g4 += yh.x * x2w0; g5 += yh.x * x2w1; g6 += yh.x * x2w2; g7 += yh.x * x2w3;
                h4 += yr.x * x2w0; h5 += yr.x * x2w1; h6 += yr.x * x2w2; h7 += yr.x * x2w3;
                w2 += o4;
                let y2w0 = weight(w2 + 0u); let y2w1 = weight(w2 + 1u); let y2w2 = weight(w2 + 2u); let y2w3 = weight(w2 + 3u);
                a0 += xb.y * y2w0; a1 += xb.y * y2w1; a2 += xb.y * y2w2; a3 += xb.y * y2w3;
                b0 += xc.y * y2w0; b1 += xc.y * y2w1; b2 += xc.y * y2w2; b3 += xc.y * y2w3;
                c0 += xd.y * y2w0; c1 += xd.y * y2w1; c2 += xd.y * y2w2; c3 += xd.y * y2w3;
                d0 += xe.y * y2w0; d1 += xe.y * y2w1; d2 += xe.y * y2w2; d3 += xe.y * y2w3;
                e0 += xf.y * y2w0; e1 += xf.y * y2w1; e2 += xf.y * y2w2; e3 += xf.y * y2w3;
                f0 += xg.y * y2w0; f1 += xg.y * y2w1; f2 += xg.y * y2w2; f3 += xg.y * y2w3;
                g0 += xh.y * y2w0; g1 += xh.y * y2w1; g2 += xh.y * y2w2; g3 += xh.y * y2w3;
                h0 += xr.y * y2w0; h1 += xr.y * y2w1; h2 += xr.y * y2w2; h3 += xr.y * y2w3;
                a4 += yb.y * y2w0; a5 += yb.y * y2w1; a6 += yb.y * y2w2; a7 += yb.y * y2w3;
                b4 += yc.y * y2w0; b5 += yc.y * y2w1; b6 += yc.y * y2w2; b7 += yc.y * y2w3;
                c4 += yd.y * y2w0; c5 += yd.y * y2w1; c6 += yd.y * y2w2; c7 += yd.y * y2w3;
                d4 += ye.y * y2w0; d5 += ye.y * y2w1; d6 += ye.y * y2w2; d7 += ye.y * y2w3;
                e4 += yf.y * y2w0; e5 += yf.y * y2w1; e6 += yf.y * y2w2; e7 += yf.y * y2w3;
                f4 += yg.y * y2w0; f5 += yg.y * y2w1; f6 += yg.y * y2w2; f7 += yg.y * y2w3;
                g4 += yh.y * y2w0; g5 += yh.y * y2w1; g6 += yh.y * y2w2; g7 += yh.y * y2w3;
                h4 += yr.y * y2w0; h5 += yr.y * y2w1; h6 += yr.y * y2w2; h7 += yr.y * y2w3;
                w2 += o4;
                let z2w0 = weight(w2 + 0u); let z2w1 = weight(w2 + 1u); let z2w2 = weight(w2 + 2u); let z2w3 = weight(w2 + 3u);
                a0 += xb.z * z2w0; a1 += xb.z * z2w1; a2 += xb.z * z2w2; a3 += xb.z * z2w3;
                b0 += xc.z * z2w0; b1 += xc.z * z2w1; b2 += xc.z * z2w2; b3 += xc.z * z2w3;
                c0 += xd.z * z2w0; c1 += xd.z * z2w1; c2 += xd.z * z2w2; c3 += xd.z * z2w3;
                d0 += xe.z * z2w0; d1 += xe.z * z2w1; d2 += xe.z * z2w2; d3 += xe.z * z2w3;
                e0 += xf.z * z2w0; e1 += xf.z * z2w1; e2 += xf.z * z2w2; e3 += xf.z * z2w3;
                f0 += xg.z * z2w0; f1 += xg.z * z2w1; f2 += xg.z * z2w2; f3 += xg.z * z2w3;
                g0 += xh.z * z2w0; g1 += xh.z * z2w1; g2 += xh.z * z2w2; g3 += xh.z * z2w3;
                h0 += xr.z * z2w0; h1 += xr.z * z2w1; h2 += xr.z * z2w2; h3 += xr.z * z2w3;
                a4 += yb.z * z2w0; a5 += yb.z * z2w1; a6 += yb.z * z2w2; a7 += yb.z * z2w3;
                b4 += yc.z * z2w0; b5 += yc.z * z2w1; b6 += yc.z * z2w2; b7 += yc.z * z2w3;
                c4 += yd.z * z2w0; c5 += yd.z * z2w1; c6 += yd.z * z2w2; c7 += yd.z * z2w3;
                d4 += ye.z * z2w0; d5 += ye.z * z2w1; d6 += ye.z * z2w2; d7 += ye.z * z2w3;
                e4 += yf.z * z2w0; e5 += yf.z * z2w1; e6 += yf.z * z2w2; e7 += yf.z * z2w3;
                f4 += yg.z * z2w0; f5 += yg.z * z2w1; f6 += yg.z * z2w2; f7 += yg.z * z2w3;
                g4 += yh.z * z2w0; g5 += yh.z * z2w1; g6 += yh.z * z2w2; g7 += yh.z * z2w3;
                h4 += yr.z * z2w0; h5 += yr.z * z2w1; h6 += yr.z * z2w2; h7 += yr.z * z2w3;
                w2 += o4;
                let w2w0 = weight(w2 + 0u); let w2w1 = weight(w2 + 1u); let w2w2 = weight(w2 + 2u); let w2w3 = weight(w2 + 3u);
                a0 += xb.w * w2w0; a1 += xb.w * w2w1; a2 += xb.w * w2w2; a3 += xb.w * w2w3;
                b0 += xc.w * w2w0; b1 += xc.w * w2w1; b2 += xc.w * w2w2; b3 += xc.w * w2w3;
                c0 += xd.w * w2w0; c1 += xd.w * w2w1; c2 += xd.w * w2w2; c3 += xd.w * w2w3;
                d0 += xe.w * w2w0; d1 += xe.w * w2w1; d2 += xe.w * w2w2; d3 += xe.w * w2w3;
                e0 += xf.w * w2w0; e1 += xf.w * w2w1; e2 += xf.w * w2w2; e3 += xf.w * w2w3;
                f0 += xg.w * w2w0; f1 += xg.w * w2w1; f2 += xg.w * w2w2; f3 += xg.w * w2w3;
                g0 += xh.w * w2w0; g1 += xh.w * w2w1; g2 += xh.w * w2w2; g3 += xh.w * w2w3;
                h0 += xr.w * w2w0; h1 += xr.w * w2w1; h2 += xr.w * w2w2; h3 += xr.w * w2w3;
                a4 += yb.w * w2w0; a5 += yb.w * w2w1; a6 += yb.w * w2w2; a7 += yb.w * w2w3;
                b4 += yc.w * w2w0; b5 += yc.w * w2w1; b6 += yc.w * w2w2; b7 += yc.w * w2w3;
                c4 += yd.w * w2w0; c5 += yd.w * w2w1; c6 += yd.w * w2w2; c7 += yd.w * w2w3;
                d4 += ye.w * w2w0; d5 += ye.w * w2w1; d6 += ye.w * w2w2; d7 += ye.w * w2w3;
                e4 += yf.w * w2w0; e5 += yf.w * w2w1; e6 += yf.w * w2w2; e7 += yf.w * w2w3;
                f4 += yg.w * w2w0; f5 += yg.w * w2w1; f6 += yg.w * w2w2; f7 += yg.w * w2w3;
                g4 += yh.w * w2w0; g5 += yh.w * w2w1; g6 += yh.w * w2w2; g7 += yh.w * w2w3;
                h4 += yr.w * w2w0; h5 += yr.w * w2w1; h6 += yr.w * w2w2; h7 += yr.w * w2w3;
                w2 += o4;
            }
        }
    } else if (KH == 3u && KW == 3u && SH == 2u && SW == 2u && PAD_LEFT == 0u && OUT_W * 2u == IN_W) {
        // 3x3 stride-2 convs padded 0 left (TF 'same' on an even width): the
        // three kx taps of a row read columns 2 * ox .. 2 * ox + 16; load those
        // 17 once per 4 input channels instead of 24.
        for (var ky = 0u; ky < 3u; ky++) {
            let iy = i32(oy * 2u + ky) - i32(PAD_TOP);
            if (iy < 0 || iy >= i32(IN_H)) {
                continue;
            }
            let ix = 2u * ox;
            let row = (n * IN_H + u32(iy)) * IN_W + ix;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                let s0 = input4(row + 0u, c4, true);
                let s1 = input4(row + 1u, c4, ix + 1u < IN_W);
                let s2 = input4(row + 2u, c4, ix + 2u < IN_W);
                let s3 = input4(row + 3u, c4, ix + 3u < IN_W);
                let s4 = input4(row + 4u, c4, ix + 4u < IN_W);
                let s5 = input4(row + 5u, c4, ix + 5u < IN_W);
                let s6 = input4(row + 6u, c4, ix + 6u < IN_W);
                let s7 = input4(row + 7u, c4, ix + 7u < IN_W);
                let s8 = input4(row + 8u, c4, ix + 8u < IN_W);
                let s9 = input4(row + 9u, c4, ix + 9u < IN_W);
                let s10 = input4(row + 10u, c4, ix + 10u < IN_W);
                let s11 = input4(row + 11u, c4, ix + 11u < IN_W);
                let s12 = input4(row + 12u, c4, ix + 12u < IN_W);
                let s13 = input4(row + 13u, c4, ix + 13u < IN_W);
                let s14 = input4(row + 14u, c4, ix + 14u < IN_W);
                let s15 = input4(row + 15u, c4, ix + 15u < IN_W);
                let s16 = input4(row + 16u, c4, ix + 16u < IN_W);
                var w0 = ((ky * 3u + 0u) * IN_C + c4 * 4u) * o4 + b;
                let x0w0 = weight(w0 + 0u); let x0w1 = weight(w0 + 1u); let x0w2 = weight(w0 + 2u); let x0w3 = weight(w0 + 3u);
                a0 += s0.x * x0w0; a1 += s0.x * x0w1; a2 += s0.x * x0w2; a3 += s0.x * x0w3;
                b0 += s2.x * x0w0; b1 += s2.x * x0w1; b2 += s2.x * x0w2; b3 += s2.x * x0w3;
                c0 += s4.x * x0w0; c1 += s4.x * x0w1; c2 += s4.x * x0w2; c3 += s4.x * x0w3;
                d0 += s6.x * x0w0; d1 += s6.x * x0w1; d2 += s6.x * x0w2; d3 += s6.x * x0w3;
                e0 += s8.x * x0w0; e1 += s8.x * x0w1; e2 += s8.x * x0w2; e3 += s8.x * x0w3;
                f0 += s10.x * x0w0; f1 += s10.x * x0w1; f2 += s10.x * x0w2; f3 += s10.x * x0w3;
                g0 += s12.x * x0w0; g1 += s12.x * x0w1; g2 += s12.x * x0w2; g3 += s12.x * x0w3;
                h0 += s14.x * x0w0; h1 += s14.x * x0w1; h2 += s14.x * x0w2; h3 += s14.x * x0w3;
                w0 += o4;
                let y0w0 = weight(w0 + 0u); let y0w1 = weight(w0 + 1u); let y0w2 = weight(w0 + 2u); let y0w3 = weight(w0 + 3u);
                a0 += s0.y * y0w0; a1 += s0.y * y0w1; a2 += s0.y * y0w2; a3 += s0.y * y0w3;
                b0 += s2.y * y0w0; b1 += s2.y * y0w1; b2 += s2.y * y0w2; b3 += s2.y * y0w3;
                c0 += s4.y * y0w0; c1 += s4.y * y0w1; c2 += s4.y * y0w2; c3 += s4.y * y0w3;
                d0 += s6.y * y0w0; d1 += s6.y * y0w1; d2 += s6.y * y0w2; d3 += s6.y * y0w3;
                e0 += s8.y * y0w0; e1 += s8.y * y0w1; e2 += s8.y * y0w2; e3 += s8.y * y0w3;
                f0 += s10.y * y0w0; f1 += s10.y * y0w1; f2 += s10.y * y0w2; f3 += s10.y * y0w3;
                g0 += s12.y * y0w0; g1 += s12.y * y0w1; g2 += s12.y * y0w2; g3 += s12.y * y0w3;
                h0 += s14.y * y0w0; h1 += s14.y * y0w1; h2 += s14.y * y0w2; h3 += s14.y * y0w3;
                w0 += o4;
                let z0w0 = weight(w0 + 0u); let z0w1 = weight(w0 + 1u); let z0w2 = weight(w0 + 2u); let z0w3 = weight(w0 + 3u);
                a0 += s0.z * z0w0; a1 += s0.z * z0w1; a2 += s0.z * z0w2; a3 += s0.z * z0w3;
                b0 += s2.z * z0w0; b1 += s2.z * z0w1; b2 += s2.z * z0w2; b3 += s2.z * z0w3;
                c0 += s4.z * z0w0; c1 += s4.z * z0w1; c2 += s4.z * z0w2; c3 += s4.z * z0w3;
                d0 += s6.z * z0w0; d1 += s6.z * z0w1; d2 += s6.z * z0w2; d3 += s6.z * z0w3;
                e0 += s8.z * z0w0; e1 += s8.z * z0w1; e2 += s8.z * z0w2; e3 += s8.z * z0w3;
                f0 += s10.z * z0w0; f1 += s10.z * z0w1; f2 += s10.z * z0w2; f3 += s10.z * z0w3;
                g0 += s12.z * z0w0; g1 += s12.z * z0w1; g2 += s12.z * z0w2; g3 += s12.z * z0w3;
                h0 += s14.z * z0w0; h1 += s14.z * z0w1; h2 += s14.z * z0w2; h3 += s14.z * z0w3;
                w0 += o4;
                let w0w0 = weight(w0 + 0u); let w0w1 = weight(w0 + 1u); let w0w2 = weight(w0 + 2u); let w0w3 = weight(w0 + 3u);
                a0 += s0.w * w0w0; a1 += s0.w * w0w1; a2 += s0.w * w0w2; a3 += s0.w * w0w3;
                b0 += s2.w * w0w0; b1 += s2.w * w0w1; b2 += s2.w * w0w2; b3 += s2.w * w0w3;
                c0 += s4.w * w0w0; c1 += s4.w * w0w1; c2 += s4.w * w0w2; c3 += s4.w * w0w3;
                d0 += s6.w * w0w0; d1 += s6.w * w0w1; d2 += s6.w * w0w2; d3 += s6.w * w0w3;
                e0 += s8.w * w0w0; e1 += s8.w * w0w1; e2 += s8.w * w0w2; e3 += s8.w * w0w3;
                f0 += s10.w * w0w0; f1 += s10.w * w0w1; f2 += s10.w * w0w2; f3 += s10.w * w0w3;
                g0 += s12.w * w0w0; g1 += s12.w * w0w1; g2 += s12.w * w0w2; g3 += s12.w * w0w3;
                h0 += s14.w * w0w0; h1 += s14.w * w0w1; h2 += s14.w * w0w2; h3 += s14.w * w0w3;
                w0 += o4;
                var w1 = ((ky * 3u + 1u) * IN_C + c4 * 4u) * o4 + b;
                let x1w0 = weight(w1 + 0u); let x1w1 = weight(w1 + 1u); let x1w2 = weight(w1 + 2u); let x1w3 = weight(w1 + 3u);
                a0 += s1.x * x1w0; a1 += s1.x * x1w1; a2 += s1.x * x1w2; a3 += s1.x * x1w3;
                b0 += s3.x * x1w0; b1 += s3.x * x1w1; b2 += s3.x * x1w2; b3 += s3.x * x1w3;
                c0 += s5.x * x1w0; c1 += s5.x * x1w1; c2 += s5.x * x1w2; c3 += s5.x * x1w3;
                d0 += s7.x * x1w0; d1 += s7.x * x1w1; d2 += s7.x * x1w2; d3 += s7.x * x1w3;
                e0 += s9.x * x1w0; e1 += s9.x * x1w1; e2 += s9.x * x1w2; e3 += s9.x * x1w3;
                f0 += s11.x * x1w0; f1 += s11.x * x1w1; f2 += s11.x * x1w2; f3 += s11.x * x1w3;
                g0 += s13.x * x1w0; g1 += s13.x * x1w1; g2 += s13.x * x1w2; g3 += s13.x * x1w3;
                h0 += s15.x * x1w0; h1 += s15.x * x1w1; h2 += s15.x * x1w2; h3 += s15.x * x1w3;
                w1 += o4;
                let y1w0 = weight(w1 + 0u); let y1w1 = weight(w1 + 1u); let y1w2 = weight(w1 + 2u); let y1w3 = weight(w1 + 3u);
                a0 += s1.y * y1w0; a1 += s1.y * y1w1; a2 += s1.y * y1w2; a3 += s1.y * y1w3;
                b0 += s3.y * y1w0; b1 += s3.y * y1w1; b2 += s3.y * y1w2; b3 += s3.y * y1w3;
                c0 += s5.y * y1w0; c1 += s5.y * y1w1; c2 += s5.y * y1w2; c3 += s5.y * y1w3;
                d0 += s7.y * y1w0; d1 += s7.y * y1w1; d2 += s7.y * y1w2; d3 += s7.y * y1w3;
                e0 += s9.y * y1w0; e1 += s9.y * y1w1; e2 += s9.y * y1w2; e3 += s9.y * y1w3;
                f0 += s11.y * y1w0; f1 += s11.y * y1w1; f2 += s11.y * y1w2; f3 += s11.y * y1w3;
                g0 += s13.y * y1w0; g1 += s13.y * y1w1; g2 += s13.y * y1w2; g3 += s13.y * y1w3;
                h0 += s15.y * y1w0; h1 += s15.y * y1w1; h2 += s15.y * y1w2; h3 += s15.y * y1w3;
                w1 += o4;
                let z1w0 = weight(w1 + 0u); let z1w1 = weight(w1 + 1u); let z1w2 = weight(w1 + 2u); let z1w3 = weight(w1 + 3u);
                a0 += s1.z * z1w0; a1 += s1.z * z1w1; a2 += s1.z * z1w2; a3 += s1.z * z1w3;
                b0 += s3.z * z1w0; b1 += s3.z * z1w1; b2 += s3.z * z1w2; b3 += s3.z * z1w3;
                c0 += s5.z * z1w0; c1 += s5.z * z1w1; c2 += s5.z * z1w2; c3 += s5.z * z1w3;
                d0 += s7.z * z1w0; d1 += s7.z * z1w1; d2 += s7.z * z1w2; d3 += s7.z * z1w3;
                e0 += s9.z * z1w0; e1 += s9.z * z1w1; e2 += s9.z * z1w2; e3 += s9.z * z1w3;
                f0 += s11.z * z1w0; f1 += s11.z * z1w1; f2 += s11.z * z1w2; f3 += s11.z * z1w3;
                g0 += s13.z * z1w0; g1 += s13.z * z1w1; g2 += s13.z * z1w2; g3 += s13.z * z1w3;
                h0 += s15.z * z1w0; h1 += s15.z * z1w1; h2 += s15.z * z1w2; h3 += s15.z * z1w3;
                w1 += o4;
                let w1w0 = weight(w1 + 0u); let w1w1 = weight(w1 + 1u); let w1w2 = weight(w1 + 2u); let w1w3 = weight(w1 + 3u);
                a0 += s1.w * w1w0; a1 += s1.w * w1w1; a2 += s1.w * w1w2; a3 += s1.w * w1w3;
                b0 += s3.w * w1w0; b1 += s3.w * w1w1; b2 += s3.w * w1w2; b3 += s3.w * w1w3;
                c0 += s5.w * w1w0; c1 += s5.w * w1w1; c2 += s5.w * w1w2; c3 += s5.w * w1w3;
                d0 += s7.w * w1w0; d1 += s7.w * w1w1; d2 += s7.w * w1w2; d3 += s7.w * w1w3;
                e0 += s9.w * w1w0; e1 += s9.w * w1w1; e2 += s9.w * w1w2; e3 += s9.w * w1w3;
                f0 += s11.w * w1w0; f1 += s11.w * w1w1; f2 += s11.w * w1w2; f3 += s11.w * w1w3;
                g0 += s13.w * w1w0; g1 += s13.w * w1w1; g2 += s13.w * w1w2; g3 += s13.w * w1w3;
                h0 += s15.w * w1w0; h1 += s15.w * w1w1; h2 += s15.w * w1w2; h3 += s15.w * w1w3;
                w1 += o4;
                var w2 = ((ky * 3u + 2u) * IN_C + c4 * 4u) * o4 + b;
                let x2w0 = weight(w2 + 0u); let x2w1 = weight(w2 + 1u); let x2w2 = weight(w2 + 2u); let x2w3 = weight(w2 + 3u);
                a0 += s2.x * x2w0; a1 += s2.x * x2w1; a2 += s2.x * x2w2; a3 += s2.x * x2w3;
                b0 += s4.x * x2w0; b1 += s4.x * x2w1; b2 += s4.x * x2w2; b3 += s4.x * x2w3;
                c0 += s6.x * x2w0; c1 += s6.x * x2w1; c2 += s6.x * x2w2; c3 += s6.x * x2w3;
                d0 += s8.x * x2w0; d1 += s8.x * x2w1; d2 += s8.x * x2w2; d3 += s8.x * x2w3;
                e0 += s10.x * x2w0; e1 += s10.x * x2w1; e2 += s10.x * x2w2; e3 += s10.x * x2w3;
                f0 += s12.x * x2w0; f1 += s12.x * x2w1; f2 += s12.x * x2w2; f3 += s12.x * x2w3;
                g0 += s14.x * x2w0; g1 += s14.x * x2w1; g2 += s14.x * x2w2; g3 += s14.x * x2w3;
                h0 += s16.x * x2w0; h1 += s16.x * x2w1; h2 += s16.x * x2w2; h3 += s16.x * x2w3;
                w2 += o4;
                let y2w0 = weight(w2 + 0u); let y2w1 = weight(w2 + 1u); let y2w2 = weight(w2 + 2u); let y2w3 = weight(w2 + 3u);
                a0 += s2.y * y2w0; a1 += s2.y * y2w1; a2 += s2.y * y2w2; a3 += s2.y * y2w3;
                b0 += s4.y * y2w0; b1 += s4.y * y2w1; b2 += s4.y * y2w2; b3 += s4.y * y2w3;
                c0 += s6.y * y2w0; c1 += s6.y * y2w1; c2 += s6.y * y2w2; c3 += s6.y * y2w3;
                d0 += s8.y * y2w0; d1 += s8.y * y2w1; d2 += s8.y * y2w2; d3 += s8.y * y2w3;
                e0 += s10.y * y2w0; e1 += s10.y * y2w1; e2 += s10.y * y2w2; e3 += s10.y * y2w3;
                f0 += s12.y * y2w0; f1 += s12.y * y2w1; f2 += s12.y * y2w2; f3 += s12.y * y2w3;
                g0 += s14.y * y2w0; g1 += s14.y * y2w1; g2 += s14.y * y2w2; g3 += s14.y * y2w3;
                h0 += s16.y * y2w0; h1 += s16.y * y2w1; h2 += s16.y * y2w2; h3 += s16.y * y2w3;
                w2 += o4;
                let z2w0 = weight(w2 + 0u); let z2w1 = weight(w2 + 1u); let z2w2 = weight(w2 + 2u); let z2w3 = weight(w2 + 3u);
                a0 += s2.z * z2w0; a1 += s2.z * z2w1; a2 += s2.z * z2w2; a3 += s2.z * z2w3;
                b0 += s4.z * z2w0; b1 += s4.z * z2w1; b2 += s4.z * z2w2; b3 += s4.z * z2w3;
                c0 += s6.z * z2w0; c1 += s6.z * z2w1; c2 += s6.z * z2w2; c3 += s6.z * z2w3;
                d0 += s8.z * z2w0; d1 += s8.z * z2w1; d2 += s8.z * z2w2; d3 += s8.z * z2w3;
                e0 += s10.z * z2w0; e1 += s10.z * z2w1; e2 += s10.z * z2w2; e3 += s10.z * z2w3;
                f0 += s12.z * z2w0; f1 += s12.z * z2w1; f2 += s12.z * z2w2; f3 += s12.z * z2w3;
                g0 += s14.z * z2w0; g1 += s14.z * z2w1; g2 += s14.z * z2w2; g3 += s14.z * z2w3;
                h0 += s16.z * z2w0; h1 += s16.z * z2w1; h2 += s16.z * z2w2; h3 += s16.z * z2w3;
                w2 += o4;
                let w2w0 = weight(w2 + 0u); let w2w1 = weight(w2 + 1u); let w2w2 = weight(w2 + 2u); let w2w3 = weight(w2 + 3u);
                a0 += s2.w * w2w0; a1 += s2.w * w2w1; a2 += s2.w * w2w2; a3 += s2.w * w2w3;
                b0 += s4.w * w2w0; b1 += s4.w * w2w1; b2 += s4.w * w2w2; b3 += s4.w * w2w3;
                c0 += s6.w * w2w0; c1 += s6.w * w2w1; c2 += s6.w * w2w2; c3 += s6.w * w2w3;
                d0 += s8.w * w2w0; d1 += s8.w * w2w1; d2 += s8.w * w2w2; d3 += s8.w * w2w3;
                e0 += s10.w * w2w0; e1 += s10.w * w2w1; e2 += s10.w * w2w2; e3 += s10.w * w2w3;
                f0 += s12.w * w2w0; f1 += s12.w * w2w1; f2 += s12.w * w2w2; f3 += s12.w * w2w3;
                g0 += s14.w * w2w0; g1 += s14.w * w2w1; g2 += s14.w * w2w2; g3 += s14.w * w2w3;
                h0 += s16.w * w2w0; h1 += s16.w * w2w1; h2 += s16.w * w2w2; h3 += s16.w * w2w3;
                w2 += o4;
            }
        }
    } else {
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
    }
    if (SHORTCUT) {
        // The shortcut summed on its own, then added (the CPU's numbers):
        // pixels a..d, then e..h.
        let s = shortcut_run(n, oy, ox, b, o4);
        a0 += s.a0; a1 += s.a1; a2 += s.a2; a3 += s.a3;
        b0 += s.b0; b1 += s.b1; b2 += s.b2; b3 += s.b3;
        c0 += s.c0; c1 += s.c1; c2 += s.c2; c3 += s.c3;
        d0 += s.d0; d1 += s.d1; d2 += s.d2; d3 += s.d3;
        let t = shortcut_run(n, oy, ox + 4u, b, o4);
        e0 += t.a0; e1 += t.a1; e2 += t.a2; e3 += t.a3;
        f0 += t.b0; f1 += t.b1; f2 += t.b2; f3 += t.b3;
        g0 += t.c0; g1 += t.c1; g2 += t.c2; g3 += t.c3;
        h0 += t.d0; h1 += t.d1; h2 += t.d2; h3 += t.d3;
    }
    if (SHORTCUT && WIDE_ROWS == 2u) {
        let s = shortcut_run(n, oy + 1u, ox, b, o4);
        a4 += s.a0; a5 += s.a1; a6 += s.a2; a7 += s.a3;
        b4 += s.b0; b5 += s.b1; b6 += s.b2; b7 += s.b3;
        c4 += s.c0; c5 += s.c1; c6 += s.c2; c7 += s.c3;
        d4 += s.d0; d5 += s.d1; d6 += s.d2; d7 += s.d3;
        let t = shortcut_run(n, oy + 1u, ox + 4u, b, o4);
        e4 += t.a0; e5 += t.a1; e6 += t.a2; e7 += t.a3;
        f4 += t.b0; f5 += t.b1; f6 += t.b2; f7 += t.b3;
        g4 += t.c0; g5 += t.c1; g6 += t.c2; g7 += t.c3;
        h4 += t.d0; h5 += t.d1; h6 += t.d2; h7 += t.d3;
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
    if (WIDE_ROWS == 2u && oy + 1u < OUT_H) {
        let base1 = base + OUT_W * out4;
        finish(base1, c, a4); finish(base1 + 1u, c + 4u, a5); finish(base1 + 2u, c + 8u, a6); finish(base1 + 3u, c + 12u, a7);
        if (ox + 1u < OUT_W) {
            let o = base1 + 1u * out4;
            finish(o, c, b4); finish(o + 1u, c + 4u, b5); finish(o + 2u, c + 8u, b6); finish(o + 3u, c + 12u, b7);
        }
        if (ox + 2u < OUT_W) {
            let o = base1 + 2u * out4;
            finish(o, c, c4); finish(o + 1u, c + 4u, c5); finish(o + 2u, c + 8u, c6); finish(o + 3u, c + 12u, c7);
        }
        if (ox + 3u < OUT_W) {
            let o = base1 + 3u * out4;
            finish(o, c, d4); finish(o + 1u, c + 4u, d5); finish(o + 2u, c + 8u, d6); finish(o + 3u, c + 12u, d7);
        }
        if (ox + 4u < OUT_W) {
            let o = base1 + 4u * out4;
            finish(o, c, e4); finish(o + 1u, c + 4u, e5); finish(o + 2u, c + 8u, e6); finish(o + 3u, c + 12u, e7);
        }
        if (ox + 5u < OUT_W) {
            let o = base1 + 5u * out4;
            finish(o, c, f4); finish(o + 1u, c + 4u, f5); finish(o + 2u, c + 8u, f6); finish(o + 3u, c + 12u, f7);
        }
        if (ox + 6u < OUT_W) {
            let o = base1 + 6u * out4;
            finish(o, c, g4); finish(o + 1u, c + 4u, g5); finish(o + 2u, c + 8u, g6); finish(o + 3u, c + 12u, g7);
        }
        if (ox + 7u < OUT_W) {
            let o = base1 + 7u * out4;
            finish(o, c, h4); finish(o + 1u, c + 4u, h5); finish(o + 2u, c + 8u, h6); finish(o + 3u, c + 12u, h7);
        }
    }
}
