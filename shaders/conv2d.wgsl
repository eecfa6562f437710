// Conv2D, NHWC, any kernel size, stride and padding (TensorFlow 'same'
// padding is resolved on the host: pad_top/pad_left are the cells before,
// the cells after fall outside the input and are skipped), with bias and
// an optional ReLU epilogue (BatchNorm is folded into weights and bias).
//
// One invocation computes one output pixel for 4 consecutive output
// channels: weights are laid out (kh, kw, cin, ceil(cout/4)) as vec4s, zero
// padded past cout, so every load is a whole vec4.

struct Params {
    n: u32, in_h: u32, in_w: u32, in_c: u32,
    out_h: u32, out_w: u32, out_c: u32, k_h: u32,
    k_w: u32, stride_h: u32, stride_w: u32, pad_top: u32,
    pad_left: u32, act: u32, _pad0: u32, _pad1: u32,
}

const WG: u32 = 64u;
const ACT_RELU: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> bias: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

@compute @workgroup_size(WG)
fn conv2d(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let co4 = (p.out_c + 3u) / 4u;
    let i = gid.x + gid.y * nwg.x * WG;
    if (i >= p.n * p.out_h * p.out_w * co4) {
        return;
    }
    let cb = i % co4;
    let pixel = i / co4;
    let ox = pixel % p.out_w;
    let oy = (pixel / p.out_w) % p.out_h;
    let n = pixel / (p.out_w * p.out_h);

    var acc = bias[cb];
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        if (iy < 0 || iy >= i32(p.in_h)) {
            continue;
        }
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            if (ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let x_base = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            let w_base = (ky * p.k_w + kx) * p.in_c * co4 + cb;
            for (var ci = 0u; ci < p.in_c; ci++) {
                acc += src[x_base + ci] * weights[w_base + ci * co4];
            }
        }
    }
    if (p.act == ACT_RELU) {
        acc = max(acc, vec4<f32>(0.0));
    }
    let out_base = pixel * p.out_c + cb * 4u;
    for (var j = 0u; j < 4u; j++) {
        if (cb * 4u + j < p.out_c) {
            dst[out_base + j] = acc[j];
        }
    }
}
