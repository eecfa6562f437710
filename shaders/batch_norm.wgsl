// The BatchNorm + activation epilogue, for the unfolded graph that exposes
// every Keras layer: y = act(x * scale[c] + offset[c]), with the per-channel
// scale = gamma / sqrt(variance + epsilon) and offset = beta - mean * scale
// computed on the host (the same f32 arithmetic as the CPU engine).
// `relu` is the standalone Activation layer.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> scale: array<f32>;
@group(0) @binding(3) var<storage, read> offset: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn batch_norm(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    let c = i % p.out_c;
    var y = src[i] * scale[c] + offset[c];
    if (p.act == ACT_RELU) {
        y = max(y, 0.0);
    }
    dst[i] = y;
}

@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    dst[i] = max(src[i], 0.0);
}
