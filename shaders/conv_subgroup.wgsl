// Conv2D like conv.wgsl (same overrides, bindings, `input4`, `finish` and
// `weight`), for drivers that run several invocations per SIMD instruction
// and pay per lane for every buffer load (lavapipe, SwiftShader):
// invocations share loads through subgroup operations instead.
// - Weights: per tap and 4 input channels the block needs 16 weight vec4s;
//   lane l of each 8 loads vec4s l and l + 8 and every lane takes all 16
//   with subgroupBroadcast (constant lanes): 2 loads instead of 16.
// - Inputs, 3x3 stride-1 convs padded 1 left: a lane loads its
//   own 4 pixels of a row once for all three kx taps and takes the pixel
//   left of its run from the lane before and the one right of it from the
//   lane after: 4 loads instead of 12. It checks that its neighbours hold
//   the neighbouring runs of the same row; a subgroup where any lane finds
//   otherwise loads those two pixels itself (as every lane does where the
//   input part says loads are cheaper: SHUFFLE_NEIGHBOURS). 3x3 stride-2 convs padded 0
//   left: a lane loads the 9 columns its three taps read once (not 12).
//   Both sum a kernel row's taps 4 input channels at a time, not in the
//   CPU's order (within ~1e-6 relative).
// Needs subgroups of at least 8 invocations; every lane stays active to the
// end (no early return, no divergent `continue`), as subgroup operations
// require.

// Lanes that share a tap's 16 weight vec4s: 16 (one load each) where every
// subgroup of the adapter has at least 16 invocations (lavapipe at 512 bits),
// else 8 (two loads each).
override WEIGHT_LANES: u32;

// One tap over 4 input channels (x*: their values at pixels a..d) and 16
// output channels: w{i}{o} the weight vec4 of input channel i, output vec4 o.
// Each accumulator takes its 4 input channels in a row (channel order, as
// `mac` adds them): a CPU driver that keeps the 64 accumulators on the stack
// then loads and stores each once per tap, not once per input channel.
fn mac_tap(acc: ptr<function, Acc>, xa: vec4<f32>, xb: vec4<f32>, xc: vec4<f32>, xd: vec4<f32>,
           w00: vec4<f32>, w01: vec4<f32>, w02: vec4<f32>, w03: vec4<f32>,
           w10: vec4<f32>, w11: vec4<f32>, w12: vec4<f32>, w13: vec4<f32>,
           w20: vec4<f32>, w21: vec4<f32>, w22: vec4<f32>, w23: vec4<f32>,
           w30: vec4<f32>, w31: vec4<f32>, w32: vec4<f32>, w33: vec4<f32>) {
    (*acc).a0 = (*acc).a0 + xa.x * w00 + xa.y * w10 + xa.z * w20 + xa.w * w30;
    (*acc).a1 = (*acc).a1 + xa.x * w01 + xa.y * w11 + xa.z * w21 + xa.w * w31;
    (*acc).a2 = (*acc).a2 + xa.x * w02 + xa.y * w12 + xa.z * w22 + xa.w * w32;
    (*acc).a3 = (*acc).a3 + xa.x * w03 + xa.y * w13 + xa.z * w23 + xa.w * w33;
    (*acc).b0 = (*acc).b0 + xb.x * w00 + xb.y * w10 + xb.z * w20 + xb.w * w30;
    (*acc).b1 = (*acc).b1 + xb.x * w01 + xb.y * w11 + xb.z * w21 + xb.w * w31;
    (*acc).b2 = (*acc).b2 + xb.x * w02 + xb.y * w12 + xb.z * w22 + xb.w * w32;
    (*acc).b3 = (*acc).b3 + xb.x * w03 + xb.y * w13 + xb.z * w23 + xb.w * w33;
    (*acc).c0 = (*acc).c0 + xc.x * w00 + xc.y * w10 + xc.z * w20 + xc.w * w30;
    (*acc).c1 = (*acc).c1 + xc.x * w01 + xc.y * w11 + xc.z * w21 + xc.w * w31;
    (*acc).c2 = (*acc).c2 + xc.x * w02 + xc.y * w12 + xc.z * w22 + xc.w * w32;
    (*acc).c3 = (*acc).c3 + xc.x * w03 + xc.y * w13 + xc.z * w23 + xc.w * w33;
    (*acc).d0 = (*acc).d0 + xd.x * w00 + xd.y * w10 + xd.z * w20 + xd.w * w30;
    (*acc).d1 = (*acc).d1 + xd.x * w01 + xd.y * w11 + xd.z * w21 + xd.w * w31;
    (*acc).d2 = (*acc).d2 + xd.x * w02 + xd.y * w12 + xd.z * w22 + xd.w * w32;
    (*acc).d3 = (*acc).d3 + xd.x * w03 + xd.y * w13 + xd.z * w23 + xd.w * w33;
}

// One tap over 4 input channels: x* are those channels at pixels a..d, `w`
// the index of the first weight vec4 (row stride `o4`), `lane` the
// invocation's subgroup lane.
fn tap(acc: ptr<function, Acc>, xa: vec4<f32>, xb: vec4<f32>, xc: vec4<f32>, xd: vec4<f32>,
       w: u32, o4: u32, lane: u32) {
    // vec4 k (0..15) of the tap: input channel k / 4, output vec4 k % 4.
    if (WEIGHT_LANES == 16u) {
        let l = lane % 16u;
        let v = weight(w + (l / 4u) * o4 + l % 4u);
        mac_tap(acc, xa, xb, xc, xd,
                subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u), subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u),
                subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u), subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u),
                subgroupBroadcast(v, 8u), subgroupBroadcast(v, 9u), subgroupBroadcast(v, 10u), subgroupBroadcast(v, 11u),
                subgroupBroadcast(v, 12u), subgroupBroadcast(v, 13u), subgroupBroadcast(v, 14u), subgroupBroadcast(v, 15u));
        return;
    }
    let lane8 = lane % 8u;
    let lo = weight(w + (lane8 / 4u) * o4 + lane8 % 4u);
    let hi = weight(w + (lane8 / 4u + 2u) * o4 + lane8 % 4u);
    mac_tap(acc, xa, xb, xc, xd,
            subgroupBroadcast(lo, 0u), subgroupBroadcast(lo, 1u), subgroupBroadcast(lo, 2u), subgroupBroadcast(lo, 3u),
            subgroupBroadcast(lo, 4u), subgroupBroadcast(lo, 5u), subgroupBroadcast(lo, 6u), subgroupBroadcast(lo, 7u),
            subgroupBroadcast(hi, 0u), subgroupBroadcast(hi, 1u), subgroupBroadcast(hi, 2u), subgroupBroadcast(hi, 3u),
            subgroupBroadcast(hi, 4u), subgroupBroadcast(hi, 5u), subgroupBroadcast(hi, 6u), subgroupBroadcast(hi, 7u));
}

@compute @workgroup_size(WG)
fn conv_subgroup(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
                 @builtin(subgroup_size) lanes: u32) {
    let runs = (OUT_W + PX - 1u) / PX;
    let total = p.n * OUT_H * runs;
    let flat = flat_index(gid, nwg);
    let live = flat < total;
    let i = min(flat, total - 1u); // lanes past the batch compute a copy and store nothing
    let ox = (i % runs) * PX;
    let oy = (i / runs) % OUT_H;
    let n = i / (runs * OUT_H);
    let block = wid.y;
    let o4 = (OUT_C + CB - 1u) / CB * (CB / 4u);
    let b = block * (CB / 4u);
    var acc = Acc(bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u],
                  bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u],
                  bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u],
                  bias[b], bias[b + 1u], bias[b + 2u], bias[b + 3u]);
    if (KW == 3u && SW == 1u && PAD_LEFT == 1u && OUT_W == IN_W) {
        // Do the neighbouring lanes hold the neighbouring runs of this row?
        let before = subgroupShuffleUp(i, 1u);
        let after = subgroupShuffleDown(i, 1u);
        let left_ok = ox == 0u || (lane > 0u && before + 1u == i);
        let right_ok = ox + PX >= IN_W || (lane + 1u < lanes && after == i + 1u);
        let neighbours_share = SHUFFLE_NEIGHBOURS && subgroupAll(left_ok && right_ok);
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let pa = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + ox;
            let w = ky * KW * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                let xa = input4(pa, c4, vy);
                let xb = input4(pa + 1u, c4, vy && ox + 1u < IN_W);
                let xc = input4(pa + 2u, c4, vy && ox + 2u < IN_W);
                let xd = input4(pa + 3u, c4, vy && ox + 3u < IN_W);
                let from_before = subgroupShuffleUp(xd, 1u);
                let from_after = subgroupShuffleDown(xa, 1u);
                let has_left = vy && ox > 0u;
                let has_right = vy && ox + PX < IN_W;
                var xl: vec4<f32>;
                var xr: vec4<f32>;
                if (neighbours_share) {
                    xl = select(vec4<f32>(0.0), from_before, has_left);
                    xr = select(vec4<f32>(0.0), from_after, has_right);
                } else {
                    xl = input4(pa - 1u, c4, has_left);
                    xr = input4(pa + PX, c4, has_right);
                }
                let wc = w + c4 * 4u * o4;
                tap(&acc, xl, xa, xb, xc, wc, o4, lane);
                tap(&acc, xa, xb, xc, xd, wc + IN_C * o4, o4, lane);
                tap(&acc, xb, xc, xd, xr, wc + 2u * IN_C * o4, o4, lane);
            }
        }
    } else if (KW == 3u && SW == 2u && PAD_LEFT == 0u && OUT_W * 2u == IN_W) {
        // 3x3 stride-2 convs padded 0 left (TF 'same' on an even width): the
        // three kx taps of a row read columns 2 * ox .. 2 * ox + 8; load those
        // 9 once per 4 input channels instead of 12.
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let ix = 2u * ox;
            let row = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + ix;
            let w = ky * KW * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                let s0 = input4(row, c4, vy);
                let s1 = input4(row + 1u, c4, vy && ix + 1u < IN_W);
                let s2 = input4(row + 2u, c4, vy && ix + 2u < IN_W);
                let s3 = input4(row + 3u, c4, vy && ix + 3u < IN_W);
                let s4 = input4(row + 4u, c4, vy && ix + 4u < IN_W);
                let s5 = input4(row + 5u, c4, vy && ix + 5u < IN_W);
                let s6 = input4(row + 6u, c4, vy && ix + 6u < IN_W);
                let s7 = input4(row + 7u, c4, vy && ix + 7u < IN_W);
                let s8 = input4(row + 8u, c4, vy && ix + 8u < IN_W);
                let wc = w + c4 * 4u * o4;
                tap(&acc, s0, s2, s4, s6, wc, o4, lane);
                tap(&acc, s1, s3, s5, s7, wc + IN_C * o4, o4, lane);
                tap(&acc, s2, s4, s6, s8, wc + 2u * IN_C * o4, o4, lane);
            }
        }
    } else {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let row = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W;
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * SW + kx) - i32(PAD_LEFT);
                let s = i32(SW);
                let ia = vy && ix >= 0 && ix < i32(IN_W);
                let ib = vy && ix + s >= 0 && ix + s < i32(IN_W) && ox + 1u < OUT_W;
                let ic = vy && ix + 2 * s >= 0 && ix + 2 * s < i32(IN_W) && ox + 2u < OUT_W;
                let id = vy && ix + 3 * s >= 0 && ix + 3 * s < i32(IN_W) && ox + 3u < OUT_W;
                let w = (ky * KW + kx) * IN_C * o4 + b;
                for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                    let xa = input4(row + u32(ix), c4, ia);
                    let xb = input4(row + u32(ix + s), c4, ib);
                    let xc = input4(row + u32(ix + 2 * s), c4, ic);
                    let xd = input4(row + u32(ix + 3 * s), c4, id);
                    tap(&acc, xa, xb, xc, xd, w + c4 * 4u * o4, o4, lane);
                }
            }
        }
    }
    if (SHORTCUT) {
        // The shortcut summed on its own (bias, then its input channels in
        // order, as the CPU does), its weights shared like the conv's.
        var sc = shortcut_bias(b);
        let pa = shortcut_pixel(n, oy, ox);
        for (var c4 = 0u; c4 < SC_C / 4u; c4++) {
            let xa = shortcut_input4(pa, c4, true);
            let xb = shortcut_input4(pa + SC_SW, c4, ox + 1u < OUT_W);
            let xc = shortcut_input4(pa + 2u * SC_SW, c4, ox + 2u < OUT_W);
            let xd = shortcut_input4(pa + 3u * SC_SW, c4, ox + 3u < OUT_W);
            tap(&sc, xa, xb, xc, xd, SC_WEIGHT4 + c4 * 4u * o4 + b, o4, lane);
        }
        acc.a0 += sc.a0; acc.a1 += sc.a1; acc.a2 += sc.a2; acc.a3 += sc.a3;
        acc.b0 += sc.b0; acc.b1 += sc.b1; acc.b2 += sc.b2; acc.b3 += sc.b3;
        acc.c0 += sc.c0; acc.c1 += sc.c1; acc.c2 += sc.c2; acc.c3 += sc.c3;
        acc.d0 += sc.d0; acc.d1 += sc.d1; acc.d2 += sc.d2; acc.d3 += sc.d3;
    }
    if (!live) {
        return;
    }
    let out4 = OUT_C / 4u;
    let c = block * CB;
    let base = ((n * OUT_H + oy) * OUT_W + ox) * out4 + b;
    finish(base, c, acc.a0); finish(base + 1u, c + 4u, acc.a1); finish(base + 2u, c + 8u, acc.a2); finish(base + 3u, c + 12u, acc.a3);
    if (ox + 1u < OUT_W) {
        let o = base + out4;
        finish(o, c, acc.b0); finish(o + 1u, c + 4u, acc.b1); finish(o + 2u, c + 8u, acc.b2); finish(o + 3u, c + 12u, acc.b3);
    }
    if (ox + 2u < OUT_W) {
        let o = base + 2u * out4;
        finish(o, c, acc.c0); finish(o + 1u, c + 4u, acc.c1); finish(o + 2u, c + 8u, acc.c2); finish(o + 3u, c + 12u, acc.c3);
    }
    if (ox + 3u < OUT_W) {
        let o = base + 3u * out4;
        finish(o, c, acc.d0); finish(o + 1u, c + 4u, acc.d1); finish(o + 2u, c + 8u, acc.d2); finish(o + 3u, c + 12u, acc.d3);
    }
}
