// The classifier head in one dispatch: the mean of each channel over all
// pixels, a Dense layer and its activation (linear, ReLU or softmax).
// Workgroup n handles image n: its WG invocations first pool channels
// t, t + WG, ... into workgroup memory, then compute logits t, t + WG, ...,
// then each normalises its own logits with the row's max and sum.
// Channel and class counts up to HEAD_MAX (the lowering declines larger ones).

override PIXELS: u32;
override IN_C: u32;
override OUT_C: u32;
override ACT: u32; // 0 linear, 1 relu, 2 softmax

@group(0) @binding(0) var<uniform> p: Params;
// Activations in and out are `act` (f32, or f16); arithmetic is f32.
@group(0) @binding(1) var<storage, read> src: array<act>;
@group(0) @binding(2) var<storage, read> weights: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<act>;

var<workgroup> pooled: array<f32, HEAD_MAX>;
var<workgroup> logits: array<f32, HEAD_MAX>;

@compute @workgroup_size(WG)
fn head(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = wid.x + wid.z * nwg.x;
    let t = lid.x;
    // Every invocation reaches the barriers; images past the batch do no work.
    let live = n < p.n;
    for (var c = t; c < IN_C; c += WG) {
        var sum = 0.0;
        if (live) {
            for (var px = 0u; px < PIXELS; px++) {
                sum += f32(src[(n * PIXELS + px) * IN_C + c]);
            }
        }
        pooled[c] = sum / f32(PIXELS);
    }
    workgroupBarrier();
    for (var o = t; o < OUT_C; o += WG) {
        var acc = bias[o];
        for (var k = 0u; k < IN_C; k++) {
            acc += pooled[k] * weights[k * OUT_C + o];
        }
        if (ACT == 1u) {
            acc = max(acc, 0.0);
        }
        logits[o] = acc;
    }
    workgroupBarrier();
    var m = logits[0];
    var total = 0.0;
    // Only invocations that write a class need the row's max and sum (on
    // SIMD-on-CPU drivers the others then skip the loops as a group).
    if (ACT == 2u && t < OUT_C) {
        for (var k = 1u; k < OUT_C; k++) {
            m = max(m, logits[k]);
        }
        for (var k = 0u; k < OUT_C; k++) {
            total += exp(logits[k] - m);
        }
    }
    if (!live) {
        return;
    }
    for (var o = t; o < OUT_C; o += WG) {
        var y = logits[o];
        if (ACT == 2u) {
            y = exp(y - m) / total;
        }
        dst[n * OUT_C + o] = act(y);
    }
}
