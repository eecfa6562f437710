// Pooling, NHWC. Average and max over a window with host-resolved padding;
// padded cells are skipped, so an average divides by the number of real
// cells (TensorFlow's rule). Global average pooling: the mean over all
// pixels, per channel.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

fn window_pool(i: u32, is_max: bool) -> f32 {
    let c = i % p.out_c;
    let ox = (i / p.out_c) % p.out_w;
    let oy = (i / (p.out_c * p.out_w)) % p.out_h;
    let n = i / (p.out_c * p.out_w * p.out_h);
    // The max starts from the first real cell: no sentinel value needed.
    var acc = 0.0;
    var count = 0u;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            if (iy < 0 || iy >= i32(p.in_h) || ix < 0 || ix >= i32(p.in_w)) {
                continue;
            }
            let v = src[((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + c];
            if (is_max) {
                acc = select(max(acc, v), v, count == 0u);
            } else {
                acc += v;
            }
            count++;
        }
    }
    if (is_max) {
        return acc;
    }
    return acc / f32(count);
}

@compute @workgroup_size(WG)
fn avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n * p.out_h * p.out_w * p.out_c) {
        dst[i] = window_pool(i, false);
    }
}

@compute @workgroup_size(WG)
fn max_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < p.n * p.out_h * p.out_w * p.out_c) {
        dst[i] = window_pool(i, true);
    }
}

@compute @workgroup_size(WG)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.n * p.in_c) {
        return;
    }
    let c = i % p.in_c;
    let n = i / p.in_c;
    let pixels = p.in_h * p.in_w;
    var acc = 0.0;
    for (var px = 0u; px < pixels; px++) {
        acc += src[(n * pixels + px) * p.in_c + c];
    }
    dst[i] = acc / f32(pixels);
}
