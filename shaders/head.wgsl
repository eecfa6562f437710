// The classifier head in one dispatch: the mean of each channel over all
// pixels, a Dense layer and its activation (linear, ReLU or softmax).
// One invocation per image, with no workgroup memory and no barriers: on
// SIMD-on-CPU drivers (SwiftShader, lavapipe) a barrier turns every group
// of lanes into a coroutine, which cost more than the head's arithmetic.
// Sums run in the CPU engine's order (pixels in order per channel, then
// inputs in order per class). Channel and class counts up to HEAD_MAX (the
// lowering declines larger ones).

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

@compute @workgroup_size(WG)
fn head(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = flat_index(gid, nwg);
    if (n >= p.n) {
        return;
    }
    var pooled: array<f32, HEAD_MAX>;
    for (var c = 0u; c < IN_C; c++) {
        var sum = 0.0;
        for (var px = 0u; px < PIXELS; px++) {
            sum += f32(src[(n * PIXELS + px) * IN_C + c]);
        }
        pooled[c] = sum / f32(PIXELS);
    }
    var logits: array<f32, HEAD_MAX>;
    var m = 0.0;
    for (var o = 0u; o < OUT_C; o++) {
        var acc = bias[o];
        for (var k = 0u; k < IN_C; k++) {
            acc += pooled[k] * weights[k * OUT_C + o];
        }
        if (ACT == 1u) {
            acc = max(acc, 0.0);
        }
        logits[o] = acc;
        m = select(max(m, acc), acc, o == 0u);
    }
    var total = 0.0;
    if (ACT == 2u) {
        for (var o = 0u; o < OUT_C; o++) {
            total += exp(logits[o] - m);
        }
    }
    for (var o = 0u; o < OUT_C; o++) {
        var y = logits[o];
        if (ACT == 2u) {
            y = exp(y - m) / total;
        }
        dst[n * OUT_C + o] = act(y);
    }
}
