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
//   input part says loads are cheaper: SHUFFLE_NEIGHBOURS, or with RUNS > 1).
//   3x3 stride-2 convs padded 0 left: a lane loads the 9 columns its three
//   taps read once (not 12). Both sum a kernel row's taps 4 input channels
//   at a time, not in the CPU's order (within ~1e-6 relative).
// - An invocation computes RUNS runs of PX pixels for BLOCKS blocks of CB
//   output channels: the runs of a row share the weights, the blocks share
//   the input pixels.
// - Each accumulator takes a kernel row's 12 terms (or a tap's 4) in a row:
//   a CPU driver keeps the 64 accumulators of a run on the stack, and so
//   loads and stores each once per kernel row and 4 input channels rather
//   than once per multiply-add.
// Needs subgroups of at least 8 invocations; every lane stays active to the
// end (no early return, no divergent `continue`), as subgroup operations
// require.

// Runs of PX output pixels one invocation computes: 1, 2 or 4. More runs:
// each kernel row's weights, shared once, serve more multiply-adds, and a
// row of input is loaded with 2 extra pixels for 4 * RUNS outputs, not for 4.
override RUNS: u32 = 1u;

// Blocks of CB output channels one invocation computes: 1 or 2 (the second
// block's accumulators q*, its weights in `tw2`). Two: each input fetch (a
// called function on lavapipe) serves 32 output channels, not 16.
override BLOCKS: u32 = 1u;

// Lanes that share a tap's 16 weight vec4s: 16 (one load each) where every
// subgroup of the adapter has at least 16 invocations (lavapipe at 512 bits),
// else 8 (two loads each).
override WEIGHT_LANES: u32;

// The weight vec4s of up to three taps over 4 input channels and 16 output
// channels: vec4 16 t + 4 i + o is tap t, input channel i, output vec4 o.
alias TapWeights = array<vec4<f32>, 48>;

// Tap t's 16 weight vec4s into `w`, shared across the subgroup: `first` the
// index of its first (row stride `o4`), `lane` the invocation's subgroup lane.
fn share_tap(w: ptr<function, TapWeights>, t: u32, first: u32, o4: u32, lane: u32) {
    let base = 16u * t;
    if (WEIGHT_LANES == 16u) {
        let l = lane % 16u;
        let v = weight(first + (l / 4u) * o4 + l % 4u);
        (*w)[base + 0u] = subgroupBroadcast(v, 0u);
        (*w)[base + 1u] = subgroupBroadcast(v, 1u);
        (*w)[base + 2u] = subgroupBroadcast(v, 2u);
        (*w)[base + 3u] = subgroupBroadcast(v, 3u);
        (*w)[base + 4u] = subgroupBroadcast(v, 4u);
        (*w)[base + 5u] = subgroupBroadcast(v, 5u);
        (*w)[base + 6u] = subgroupBroadcast(v, 6u);
        (*w)[base + 7u] = subgroupBroadcast(v, 7u);
        (*w)[base + 8u] = subgroupBroadcast(v, 8u);
        (*w)[base + 9u] = subgroupBroadcast(v, 9u);
        (*w)[base + 10u] = subgroupBroadcast(v, 10u);
        (*w)[base + 11u] = subgroupBroadcast(v, 11u);
        (*w)[base + 12u] = subgroupBroadcast(v, 12u);
        (*w)[base + 13u] = subgroupBroadcast(v, 13u);
        (*w)[base + 14u] = subgroupBroadcast(v, 14u);
        (*w)[base + 15u] = subgroupBroadcast(v, 15u);
        return;
    }
    let lane8 = lane % 8u;
    let lo = weight(first + (lane8 / 4u) * o4 + lane8 % 4u);
    let hi = weight(first + (lane8 / 4u + 2u) * o4 + lane8 % 4u);
    (*w)[base + 0u] = subgroupBroadcast(lo, 0u);
    (*w)[base + 1u] = subgroupBroadcast(lo, 1u);
    (*w)[base + 2u] = subgroupBroadcast(lo, 2u);
    (*w)[base + 3u] = subgroupBroadcast(lo, 3u);
    (*w)[base + 4u] = subgroupBroadcast(lo, 4u);
    (*w)[base + 5u] = subgroupBroadcast(lo, 5u);
    (*w)[base + 6u] = subgroupBroadcast(lo, 6u);
    (*w)[base + 7u] = subgroupBroadcast(lo, 7u);
    (*w)[base + 8u] = subgroupBroadcast(hi, 0u);
    (*w)[base + 9u] = subgroupBroadcast(hi, 1u);
    (*w)[base + 10u] = subgroupBroadcast(hi, 2u);
    (*w)[base + 11u] = subgroupBroadcast(hi, 3u);
    (*w)[base + 12u] = subgroupBroadcast(hi, 4u);
    (*w)[base + 13u] = subgroupBroadcast(hi, 5u);
    (*w)[base + 14u] = subgroupBroadcast(hi, 6u);
    (*w)[base + 15u] = subgroupBroadcast(hi, 7u);
}

// `a` plus tap t's 4 input channels (x: their values at one pixel) times
// their weights for output vec4 o, in channel order.
fn tap_sum(a: vec4<f32>, x: vec4<f32>, w: ptr<function, TapWeights>, t: u32, o: u32) -> vec4<f32> {
    let k = 16u * t + o;
    return a + x.x * (*w)[k] + x.y * (*w)[k + 4u] + x.z * (*w)[k + 8u] + x.w * (*w)[k + 12u];
}

// Taps 0..2 of a kernel row over 4 input channels at pixels a..d (t0*: the
// pixels tap 0 reads, t1* tap 1's, t2* tap 2's). Each accumulator takes its
// 12 terms in a row, in the order the taps and channels come: a CPU driver
// that keeps the 64 accumulators on the stack loads and stores each once per
// kernel row and 4 input channels, not once per channel.
fn mac_row(acc: ptr<function, Acc>, w: ptr<function, TapWeights>,
           t0a: vec4<f32>, t0b: vec4<f32>, t0c: vec4<f32>, t0d: vec4<f32>,
           t1a: vec4<f32>, t1b: vec4<f32>, t1c: vec4<f32>, t1d: vec4<f32>,
           t2a: vec4<f32>, t2b: vec4<f32>, t2c: vec4<f32>, t2d: vec4<f32>) {
    (*acc).a0 = tap_sum(tap_sum(tap_sum((*acc).a0, t0a, w, 0u, 0u), t1a, w, 1u, 0u), t2a, w, 2u, 0u);
    (*acc).a1 = tap_sum(tap_sum(tap_sum((*acc).a1, t0a, w, 0u, 1u), t1a, w, 1u, 1u), t2a, w, 2u, 1u);
    (*acc).a2 = tap_sum(tap_sum(tap_sum((*acc).a2, t0a, w, 0u, 2u), t1a, w, 1u, 2u), t2a, w, 2u, 2u);
    (*acc).a3 = tap_sum(tap_sum(tap_sum((*acc).a3, t0a, w, 0u, 3u), t1a, w, 1u, 3u), t2a, w, 2u, 3u);
    (*acc).b0 = tap_sum(tap_sum(tap_sum((*acc).b0, t0b, w, 0u, 0u), t1b, w, 1u, 0u), t2b, w, 2u, 0u);
    (*acc).b1 = tap_sum(tap_sum(tap_sum((*acc).b1, t0b, w, 0u, 1u), t1b, w, 1u, 1u), t2b, w, 2u, 1u);
    (*acc).b2 = tap_sum(tap_sum(tap_sum((*acc).b2, t0b, w, 0u, 2u), t1b, w, 1u, 2u), t2b, w, 2u, 2u);
    (*acc).b3 = tap_sum(tap_sum(tap_sum((*acc).b3, t0b, w, 0u, 3u), t1b, w, 1u, 3u), t2b, w, 2u, 3u);
    (*acc).c0 = tap_sum(tap_sum(tap_sum((*acc).c0, t0c, w, 0u, 0u), t1c, w, 1u, 0u), t2c, w, 2u, 0u);
    (*acc).c1 = tap_sum(tap_sum(tap_sum((*acc).c1, t0c, w, 0u, 1u), t1c, w, 1u, 1u), t2c, w, 2u, 1u);
    (*acc).c2 = tap_sum(tap_sum(tap_sum((*acc).c2, t0c, w, 0u, 2u), t1c, w, 1u, 2u), t2c, w, 2u, 2u);
    (*acc).c3 = tap_sum(tap_sum(tap_sum((*acc).c3, t0c, w, 0u, 3u), t1c, w, 1u, 3u), t2c, w, 2u, 3u);
    (*acc).d0 = tap_sum(tap_sum(tap_sum((*acc).d0, t0d, w, 0u, 0u), t1d, w, 1u, 0u), t2d, w, 2u, 0u);
    (*acc).d1 = tap_sum(tap_sum(tap_sum((*acc).d1, t0d, w, 0u, 1u), t1d, w, 1u, 1u), t2d, w, 2u, 1u);
    (*acc).d2 = tap_sum(tap_sum(tap_sum((*acc).d2, t0d, w, 0u, 2u), t1d, w, 1u, 2u), t2d, w, 2u, 2u);
    (*acc).d3 = tap_sum(tap_sum(tap_sum((*acc).d3, t0d, w, 0u, 3u), t1d, w, 1u, 3u), t2d, w, 2u, 3u);
}

// Tap 0 of `w` over 4 input channels at pixels a..d (x*: their values).
fn mac_tap(acc: ptr<function, Acc>, w: ptr<function, TapWeights>,
           xa: vec4<f32>, xb: vec4<f32>, xc: vec4<f32>, xd: vec4<f32>) {
    (*acc).a0 = tap_sum((*acc).a0, xa, w, 0u, 0u); (*acc).a1 = tap_sum((*acc).a1, xa, w, 0u, 1u);
    (*acc).a2 = tap_sum((*acc).a2, xa, w, 0u, 2u); (*acc).a3 = tap_sum((*acc).a3, xa, w, 0u, 3u);
    (*acc).b0 = tap_sum((*acc).b0, xb, w, 0u, 0u); (*acc).b1 = tap_sum((*acc).b1, xb, w, 0u, 1u);
    (*acc).b2 = tap_sum((*acc).b2, xb, w, 0u, 2u); (*acc).b3 = tap_sum((*acc).b3, xb, w, 0u, 3u);
    (*acc).c0 = tap_sum((*acc).c0, xc, w, 0u, 0u); (*acc).c1 = tap_sum((*acc).c1, xc, w, 0u, 1u);
    (*acc).c2 = tap_sum((*acc).c2, xc, w, 0u, 2u); (*acc).c3 = tap_sum((*acc).c3, xc, w, 0u, 3u);
    (*acc).d0 = tap_sum((*acc).d0, xd, w, 0u, 0u); (*acc).d1 = tap_sum((*acc).d1, xd, w, 0u, 1u);
    (*acc).d2 = tap_sum((*acc).d2, xd, w, 0u, 2u); (*acc).d3 = tap_sum((*acc).d3, xd, w, 0u, 3u);
}

// The three taps of a kernel row over 4 input channels into `w`: `first` the
// index of tap 0's first weight vec4 (taps IN_C * o4 apart).
fn share_row(w: ptr<function, TapWeights>, first: u32, o4: u32, lane: u32) {
    share_tap(w, 0u, first, o4, lane);
    share_tap(w, 1u, first + IN_C * o4, o4, lane);
    share_tap(w, 2u, first + 2u * IN_C * o4, o4, lane);
}

// share_row into `w` for the first block and, when BLOCKS is 2, into `w2`
// for the second (its weights CB / 4 vec4s on in each row).
fn share_blocks(w: ptr<function, TapWeights>, w2: ptr<function, TapWeights>, first: u32, o4: u32, lane: u32) {
    share_row(w, first, o4, lane);
    if (BLOCKS == 2u) {
        share_row(w2, first + CB / 4u, o4, lane);
    }
}

// share_tap (tap 0) for the blocks, as share_blocks.
fn share_tap_blocks(w: ptr<function, TapWeights>, w2: ptr<function, TapWeights>, first: u32, o4: u32, lane: u32) {
    share_tap(w, 0u, first, o4, lane);
    if (BLOCKS == 2u) {
        share_tap(w2, 0u, first + CB / 4u, o4, lane);
    }
}

fn add_acc(acc: ptr<function, Acc>, s: Acc) {
    (*acc).a0 += s.a0; (*acc).a1 += s.a1; (*acc).a2 += s.a2; (*acc).a3 += s.a3;
    (*acc).b0 += s.b0; (*acc).b1 += s.b1; (*acc).b2 += s.b2; (*acc).b3 += s.b3;
    (*acc).c0 += s.c0; (*acc).c1 += s.c1; (*acc).c2 += s.c2; (*acc).c3 += s.c3;
    (*acc).d0 += s.d0; (*acc).d1 += s.d1; (*acc).d2 += s.d2; (*acc).d3 += s.d3;
}

// The epilogue of the run at pixels ox..ox+3 of row oy of image n, output
// vec4s b..b+3 (channels c..c+15): pixels past the row are not stored.
fn store_run(acc: Acc, n: u32, oy: u32, ox: u32, b: u32, c: u32) {
    let out4 = OUT_C / 4u;
    let base = ((n * OUT_H + oy) * OUT_W + ox) * out4 + b;
    if (ox < OUT_W) {
        finish(base, c, acc.a0); finish(base + 1u, c + 4u, acc.a1); finish(base + 2u, c + 8u, acc.a2); finish(base + 3u, c + 12u, acc.a3);
    }
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

// Input vec4 c4 of pixel `pa` + k - 1 of a row (`vy`: whether the row is
// inside the input), `ox` the column of pixel `pa`: the pixels of a stride-1
// 3x3 conv padded 1 left, from the one left of the run on.
fn row_pixel(pa: u32, k: u32, c4: u32, vy: bool, ox: u32) -> vec4<f32> {
    return input4(pa + k - 1u, c4, vy && ox + k >= 1u && ox + k - 1u < IN_W);
}

// Input vec4 c4 of column ix + k of a row that starts at pixel `row` - ix.
fn row_column(row: u32, k: u32, c4: u32, vy: bool, ix: u32) -> vec4<f32> {
    return input4(row + k, c4, vy && ix + k < IN_W);
}

// A stride-1 kernel row for one run: p0..p5 the pixels left of it to right
// of it; into `acc` with weights `w` and, when BLOCKS is 2, into `acc2` with `w2`.
fn stride1_run(acc: ptr<function, Acc>, acc2: ptr<function, Acc>, w: ptr<function, TapWeights>,
               w2: ptr<function, TapWeights>, p0: vec4<f32>, p1: vec4<f32>, p2: vec4<f32>, p3: vec4<f32>,
               p4: vec4<f32>, p5: vec4<f32>) {
    mac_row(acc, w, p0, p1, p2, p3, p1, p2, p3, p4, p2, p3, p4, p5);
    if (BLOCKS == 2u) {
        mac_row(acc2, w2, p0, p1, p2, p3, p1, p2, p3, p4, p2, p3, p4, p5);
    }
}

// A stride-2 kernel row for one run: s0..s8 the columns its taps read (the
// blocks as in stride1_run).
fn stride2_run(acc: ptr<function, Acc>, acc2: ptr<function, Acc>, w: ptr<function, TapWeights>,
               w2: ptr<function, TapWeights>, s0: vec4<f32>, s1: vec4<f32>, s2: vec4<f32>, s3: vec4<f32>,
               s4: vec4<f32>, s5: vec4<f32>, s6: vec4<f32>, s7: vec4<f32>, s8: vec4<f32>) {
    mac_row(acc, w, s0, s2, s4, s6, s1, s3, s5, s7, s2, s4, s6, s8);
    if (BLOCKS == 2u) {
        mac_row(acc2, w2, s0, s2, s4, s6, s1, s3, s5, s7, s2, s4, s6, s8);
    }
}

// stride2_run for the run whose columns start at k (its first, `first`,
// the last of the run before); returns its last column, the next run's first.
fn stride2_run_at(acc: ptr<function, Acc>, acc2: ptr<function, Acc>, w: ptr<function, TapWeights>,
                  w2: ptr<function, TapWeights>, row: u32, k: u32, first: vec4<f32>, c4: u32, vy: bool,
                  ix: u32) -> vec4<f32> {
    let s1 = row_column(row, k + 1u, c4, vy, ix);
    let s2 = row_column(row, k + 2u, c4, vy, ix);
    let s3 = row_column(row, k + 3u, c4, vy, ix);
    let s4 = row_column(row, k + 4u, c4, vy, ix);
    let s5 = row_column(row, k + 5u, c4, vy, ix);
    let s6 = row_column(row, k + 6u, c4, vy, ix);
    let s7 = row_column(row, k + 7u, c4, vy, ix);
    let s8 = row_column(row, k + 8u, c4, vy, ix);
    stride2_run(acc, acc2, w, w2, first, s1, s2, s3, s4, s5, s6, s7, s8);
    return s8;
}

// Any other conv: tap (`ix` its first column, `vy` whether its row is inside
// the input, `row` the row's first pixel) for the run at output pixel ox
// (the blocks as in stride1_run).
fn any_tap_run(acc: ptr<function, Acc>, acc2: ptr<function, Acc>, w: ptr<function, TapWeights>,
               w2: ptr<function, TapWeights>, row: u32, ix: i32, vy: bool, ox: u32, c4: u32) {
    let s = i32(SW);
    // Output pixel ox + k reads input column ix + k * s.
    let ia = vy && ix >= 0 && ix < i32(IN_W) && ox < OUT_W;
    let ib = vy && ix + s >= 0 && ix + s < i32(IN_W) && ox + 1u < OUT_W;
    let ic = vy && ix + 2 * s >= 0 && ix + 2 * s < i32(IN_W) && ox + 2u < OUT_W;
    let id = vy && ix + 3 * s >= 0 && ix + 3 * s < i32(IN_W) && ox + 3u < OUT_W;
    let xa = input4(row + u32(ix), c4, ia);
    let xb = input4(row + u32(ix + s), c4, ib);
    let xc = input4(row + u32(ix + 2 * s), c4, ic);
    let xd = input4(row + u32(ix + 3 * s), c4, id);
    mac_tap(acc, w, xa, xb, xc, xd);
    if (BLOCKS == 2u) {
        mac_tap(acc2, w2, xa, xb, xc, xd);
    }
}

// The fused shortcut's 4 input channels c4 for the run at output pixel ox
// (the blocks as in stride1_run).
fn shortcut_tap_run(acc: ptr<function, Acc>, acc2: ptr<function, Acc>, w: ptr<function, TapWeights>,
                    w2: ptr<function, TapWeights>, n: u32, oy: u32, ox: u32, c4: u32) {
    let pa = shortcut_pixel(n, oy, ox);
    let xa = shortcut_input4(pa, c4, ox < OUT_W);
    let xb = shortcut_input4(pa + SC_SW, c4, ox + 1u < OUT_W);
    let xc = shortcut_input4(pa + 2u * SC_SW, c4, ox + 2u < OUT_W);
    let xd = shortcut_input4(pa + 3u * SC_SW, c4, ox + 3u < OUT_W);
    mac_tap(acc, w, xa, xb, xc, xd);
    if (BLOCKS == 2u) {
        mac_tap(acc2, w2, xa, xb, xc, xd);
    }
}

@compute @workgroup_size(WG)
fn conv_subgroup(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
                 @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32,
                 @builtin(subgroup_size) lanes: u32) {
    let span = PX * RUNS; // output pixels per invocation
    let runs = (OUT_W + span - 1u) / span;
    let total = p.n * OUT_H * runs;
    let flat = flat_index(gid, nwg);
    let live = flat < total;
    let i = min(flat, total - 1u); // lanes past the batch compute a copy and store nothing
    let ox = (i % runs) * span;
    let oy = (i / runs) % OUT_H;
    let n = i / (runs * OUT_H);
    let block = wid.y * BLOCKS; // the first of the invocation's blocks
    let o4 = (OUT_C + CB - 1u) / CB * (CB / 4u);
    let b = block * (CB / 4u);
    // The second block's first output vec4 (b again, unused, when BLOCKS is 1).
    let b2 = select(b, b + CB / 4u, BLOCKS == 2u);
    // Run r: output pixels ox + 4r .. ox + 4r + 3; r* the first block's, q* the second's.
    var r0 = bias_acc(b);
    var r1 = r0;
    var r2 = r0;
    var r3 = r0;
    var q0 = bias_acc(b2);
    var q1 = q0;
    var q2 = q0;
    var q3 = q0;
    var tw: TapWeights;
    var tw2: TapWeights;
    if (KW == 3u && SW == 1u && PAD_LEFT == 1u && OUT_W == IN_W) {
        // Do the neighbouring lanes hold the neighbouring runs of this row?
        let before = subgroupShuffleUp(i, 1u);
        let after = subgroupShuffleDown(i, 1u);
        let left_ok = ox == 0u || (lane > 0u && before + 1u == i);
        let right_ok = ox + PX >= IN_W || (lane + 1u < lanes && after == i + 1u);
        let neighbours_share = SHUFFLE_NEIGHBOURS && RUNS == 1u && subgroupAll(left_ok && right_ok);
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let pa = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + ox;
            let w = ky * KW * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                // p[k]: pixel ox + k - 1 of the row.
                let p1 = row_pixel(pa, 1u, c4, vy, ox);
                let p2 = row_pixel(pa, 2u, c4, vy, ox);
                let p3 = row_pixel(pa, 3u, c4, vy, ox);
                let p4 = row_pixel(pa, 4u, c4, vy, ox);
                let from_before = subgroupShuffleUp(p4, 1u);
                let from_after = subgroupShuffleDown(p1, 1u);
                var p0: vec4<f32>;
                var p5: vec4<f32>;
                if (neighbours_share) {
                    p0 = select(vec4<f32>(0.0), from_before, vy && ox > 0u);
                    p5 = select(vec4<f32>(0.0), from_after, vy && ox + PX < IN_W);
                } else {
                    p0 = row_pixel(pa, 0u, c4, vy, ox);
                    p5 = row_pixel(pa, 5u, c4, vy, ox);
                }
                share_blocks(&tw, &tw2, w + c4 * 4u * o4, o4, lane);
                stride1_run(&r0, &q0, &tw, &tw2, p0, p1, p2, p3, p4, p5);
                if (RUNS >= 2u) {
                    let p6 = row_pixel(pa, 6u, c4, vy, ox);
                    let p7 = row_pixel(pa, 7u, c4, vy, ox);
                    let p8 = row_pixel(pa, 8u, c4, vy, ox);
                    let p9 = row_pixel(pa, 9u, c4, vy, ox);
                    stride1_run(&r1, &q1, &tw, &tw2, p4, p5, p6, p7, p8, p9);
                    if (RUNS == 4u) {
                        let p10 = row_pixel(pa, 10u, c4, vy, ox);
                        let p11 = row_pixel(pa, 11u, c4, vy, ox);
                        let p12 = row_pixel(pa, 12u, c4, vy, ox);
                        let p13 = row_pixel(pa, 13u, c4, vy, ox);
                        stride1_run(&r2, &q2, &tw, &tw2, p8, p9, p10, p11, p12, p13);
                        let p14 = row_pixel(pa, 14u, c4, vy, ox);
                        let p15 = row_pixel(pa, 15u, c4, vy, ox);
                        let p16 = row_pixel(pa, 16u, c4, vy, ox);
                        let p17 = row_pixel(pa, 17u, c4, vy, ox);
                        stride1_run(&r3, &q3, &tw, &tw2, p12, p13, p14, p15, p16, p17);
                    }
                }
            }
        }
    } else if (KW == 3u && SW == 2u && PAD_LEFT == 0u && OUT_W * 2u == IN_W) {
        // 3x3 stride-2 convs padded 0 left (TF 'same' on an even width): run r's
        // three kx taps read columns 2 * ox + 8r .. 2 * ox + 8r + 8; load
        // those 9 once per 4 input channels instead of 12 (runs share one).
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let ix = 2u * ox;
            let row = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + ix;
            let w = ky * KW * IN_C * o4 + b;
            for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                share_blocks(&tw, &tw2, w + c4 * 4u * o4, o4, lane);
                let s0 = row_column(row, 0u, c4, vy, ix);
                let e0 = stride2_run_at(&r0, &q0, &tw, &tw2, row, 0u, s0, c4, vy, ix);
                if (RUNS >= 2u) {
                    let e1 = stride2_run_at(&r1, &q1, &tw, &tw2, row, 8u, e0, c4, vy, ix);
                    if (RUNS == 4u) {
                        let e2 = stride2_run_at(&r2, &q2, &tw, &tw2, row, 16u, e1, c4, vy, ix);
                        stride2_run_at(&r3, &q3, &tw, &tw2, row, 24u, e2, c4, vy, ix);
                    }
                }
            }
        }
    } else {
        for (var ky = 0u; ky < KH; ky++) {
            let iy = i32(oy * SH + ky) - i32(PAD_TOP);
            let vy = iy >= 0 && iy < i32(IN_H);
            let row = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W;
            for (var kx = 0u; kx < KW; kx++) {
                let ix = i32(ox * SW + kx) - i32(PAD_LEFT);
                let run = i32(PX * SW); // input columns between runs
                let w = (ky * KW + kx) * IN_C * o4 + b;
                for (var c4 = 0u; c4 < IN_C / 4u; c4++) {
                    share_tap_blocks(&tw, &tw2, w + c4 * 4u * o4, o4, lane);
                    any_tap_run(&r0, &q0, &tw, &tw2, row, ix, vy, ox, c4);
                    if (RUNS >= 2u) {
                        any_tap_run(&r1, &q1, &tw, &tw2, row, ix + run, vy, ox + PX, c4);
                    }
                    if (RUNS == 4u) {
                        any_tap_run(&r2, &q2, &tw, &tw2, row, ix + 2 * run, vy, ox + 2u * PX, c4);
                        any_tap_run(&r3, &q3, &tw, &tw2, row, ix + 3 * run, vy, ox + 3u * PX, c4);
                    }
                }
            }
        }
    }
    if (SHORTCUT) {
        // The shortcut summed on its own (bias, then its input channels in
        // order, as the CPU does), its weights shared like the conv's.
        var s0 = bias_acc(SC_BIAS4 + b);
        var s1 = s0;
        var s2 = s0;
        var s3 = s0;
        var t0 = bias_acc(SC_BIAS4 + b2); // the second block's
        var t1 = t0;
        var t2 = t0;
        var t3 = t0;
        for (var c4 = 0u; c4 < SC_C / 4u; c4++) {
            share_tap_blocks(&tw, &tw2, SC_WEIGHT4 + c4 * 4u * o4 + b, o4, lane);
            shortcut_tap_run(&s0, &t0, &tw, &tw2, n, oy, ox, c4);
            if (RUNS >= 2u) {
                shortcut_tap_run(&s1, &t1, &tw, &tw2, n, oy, ox + PX, c4);
            }
            if (RUNS == 4u) {
                shortcut_tap_run(&s2, &t2, &tw, &tw2, n, oy, ox + 2u * PX, c4);
                shortcut_tap_run(&s3, &t3, &tw, &tw2, n, oy, ox + 3u * PX, c4);
            }
        }
        add_acc(&r0, s0);
        add_acc(&r1, s1);
        add_acc(&r2, s2);
        add_acc(&r3, s3);
        add_acc(&q0, t0);
        add_acc(&q1, t1);
        add_acc(&q2, t2);
        add_acc(&q3, t3);
    }
    if (!live) {
        return;
    }
    let c = block * CB;
    store_runs(r0, r1, r2, r3, n, oy, ox, b, c);
    if (BLOCKS == 2u) {
        store_runs(q0, q1, q2, q3, n, oy, ox, b2, c + CB);
    }
}

// store_run for each of the RUNS runs from ox on (r0..r3, the unused ones ignored).
fn store_runs(r0: Acc, r1: Acc, r2: Acc, r3: Acc, n: u32, oy: u32, ox: u32, b: u32, c: u32) {
    store_run(r0, n, oy, ox, b, c);
    if (RUNS >= 2u) {
        store_run(r1, n, oy, ox + PX, b, c);
    }
    if (RUNS == 4u) {
        store_run(r2, n, oy, ox + 2u * PX, b, c);
        store_run(r3, n, oy, ox + 3u * PX, b, c);
    }
}
