// Prepended to every shader in this folder (src/engine/gpu/kernels.rs): the
// parameter block the host fills per dispatch (engine.rs `Params`, same
// layout), the workgroup size and the activation codes.

struct Params {
    n: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, k_h: u32,
    k_w: u32, stride_h: u32, stride_w: u32, pad_top: u32,
    // act: 0 linear, 1 relu. len: elements (element-wise ops) or rows (softmax) in the batch.
    pad_left: u32, act: u32, len: u32, _pad: u32,
}

const WG: u32 = 64u;
const ACT_RELU: u32 = 1u;

// Dispatches are 2-D when one dimension's 65,535 workgroups are not enough.
fn flat_index(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}
