// Conv2D as an implicit GEMM tiled through workgroup memory, the design of
// the fast WebGPU conv kernels on discrete GPUs (same overrides, bindings,
// `input4`, `finish` and `weight` as conv.wgsl). The GEMM: rows are output
// pixels (batch × OUT_H × OUT_W), columns output channels, the reduction
// runs over taps × input channels. Workgroup (x, y) computes WG pixels ×
// CB = 16 channels (channel block y); per step of 16 input channels at one
// tap it stages the pixels' inputs (WG × 16, invocation i loads pixel i's
// 4 vec4s) and the weights (16 × 16, invocation i loads one vec4) in
// workgroup memory, then invocation i accumulates 4 pixels × 4 channels
// from there. Needs IN_C a multiple of 16; the lowering declines others.

var<workgroup> inputs_tile: array<vec4<f32>, WG * 4u>;  // [pixel][4 vec4s of channels]
var<workgroup> weights_tile: array<vec4<f32>, 64>;      // [input channel 0..16][4 vec4s of outputs]

@compute @workgroup_size(WG)
fn conv_tiled(@builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3<u32>,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let pixels = p.n * OUT_H * OUT_W;
    let m0 = (wid.x + wid.z * nwg.x) * WG;
    let block = wid.y;
    let o4 = (OUT_C + CB - 1u) / CB * (CB / 4u);
    let b = block * (CB / 4u);
    // What this invocation computes: pixels m0 + 4 tm .. + 3, output vec4 b + tn.
    let tm = lid / 4u;
    let tn = lid % 4u;
    var acc0 = bias[b + tn];
    var acc1 = acc0;
    var acc2 = acc0;
    var acc3 = acc0;
    // What it loads: pixel m0 + lid (every invocation reaches every barrier).
    let m = min(m0 + lid, pixels - 1u);
    let live = m0 + lid < pixels;
    let ox = m % OUT_W;
    let oy = (m / OUT_W) % OUT_H;
    let n = m / (OUT_W * OUT_H);
    for (var ky = 0u; ky < KH; ky++) {
        for (var kx = 0u; kx < KW; kx++) {
            let iy = i32(oy * SH + ky) - i32(PAD_TOP);
            let ix = i32(ox * SW + kx) - i32(PAD_LEFT);
            let inside = live && iy >= 0 && iy < i32(IN_H) && ix >= 0 && ix < i32(IN_W);
            let pixel = (n * IN_H + u32(clamp(iy, 0, i32(IN_H) - 1))) * IN_W + u32(clamp(ix, 0, i32(IN_W) - 1));
            let tap = ky * KW + kx;
            for (var k0 = 0u; k0 < IN_C; k0 += 16u) {
                workgroupBarrier(); // the previous step's reads are done
                for (var j = 0u; j < 4u; j++) {
                    inputs_tile[lid * 4u + j] = input4(pixel, k0 / 4u + j, inside);
                }
                weights_tile[lid] = weight((tap * IN_C + k0 + lid / 4u) * o4 + b + lid % 4u);
                workgroupBarrier();
                for (var k = 0u; k < 16u; k++) {
                    let w = weights_tile[k * 4u + tn];
                    let row = tm * 16u + k / 4u; // pixel 4 tm, vec4 k / 4
                    let e = k % 4u;
                    acc0 += inputs_tile[row][e] * w;
                    acc1 += inputs_tile[row + 4u][e] * w;
                    acc2 += inputs_tile[row + 8u][e] * w;
                    acc3 += inputs_tile[row + 12u][e] * w;
                }
            }
        }
    }
    let out4 = OUT_C / 4u;
    let c = block * CB + tn * 4u;
    let first = m0 + tm * 4u;
    if (first < pixels) { finish(first * out4 + b + tn, c, acc0); }
    if (first + 1u < pixels) { finish((first + 1u) * out4 + b + tn, c, acc1); }
    if (first + 2u < pixels) { finish((first + 2u) * out4 + b + tn, c, acc2); }
    if (first + 3u < pixels) { finish((first + 3u) * out4 + b + tn, c, acc3); }
}
