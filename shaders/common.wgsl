// Prepended to every shader in this folder (src/engine/gpu/kernels.rs), after
// the constants the host generates from its own (`WG`, the workgroup size;
// `PX`, the output pixels one conv invocation computes; `CB`, the output
// channels it computes): the parameter block the generic kernels read per
// dispatch (kernels.rs `Params`, same layout) and the helpers every shader uses.

struct Params {
    n: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, k_h: u32,
    k_w: u32, stride_h: u32, stride_w: u32, pad_top: u32,
    // act: 0 linear, 1 relu. len: elements (element-wise ops) or rows (softmax)
    // in the batch. residual: 1 when a conv adds its second input before `act`.
    pad_left: u32, act: u32, len: u32, residual: u32,
}

const ACT_RELU: u32 = 1u;

// Dispatches spill into z when one dimension's workgroups are not enough:
// workgroup (x, y, z) covers invocations (x + z * nwg.x) * WG + local.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.z * nwg.x * WG;
}
