// The int8 conv on packed 8-bit dot products (appended to int8.wgsl; its own
// module, so a backend without packed dot products loses only this kernel).
// One output pixel × CB output channels per invocation, like int8_conv_block,
// but 4 input channels at a time: the word holding a pixel's 4 stored int8
// values against a word of their 4 weights (dot4I8Packed: one native
// instruction where the device has integer dot products, a polyfill
// elsewhere). Weights: words (kh, kw, cin / 4, cout), byte j = channel 4c + j.
//
// dot4I8Packed takes int8 operands, and x − zero point does not fit in int8,
// so the input zero point is applied once per in-image tap instead:
// Σ w (x − zp) = Σ w x − zp Σ w, with Σ_cin w per (tap, channel) in
// `weight` (binding 7, (kh, kw, cout)). Integer sums are exact (and
// two's-complement addition associative), so the result equals int8_conv's
// bit for bit.
@compute @workgroup_size(WG)
fn int8_conv_dot4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    let blocks = p.out_c / CB;
    let block = i % blocks;
    let ox = (i / blocks) % p.out_w;
    let oy = (i / (blocks * p.out_w)) % p.out_h;
    let n = i / (blocks * p.out_w * p.out_h);
    let in_c4 = p.in_c / 4u;
    var acc: array<vec4<i32>, CB / 4u>;
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
            let tap = ky * p.k_w + kx;
            let sums = tap * p.out_c + block * CB;
            for (var k = 0u; k < CB; k++) {
                acc[k / 4u][k % 4u] -= q[0] * weight[sums + k];
            }
            // The pixel's channels start at a word: p.in_c is a multiple of 4.
            let px_word = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * in_c4;
            for (var c4 = 0u; c4 < in_c4; c4++) {
                let x = src[px_word + c4];
                let w0 = (tap * in_c4 + c4) * p.out_c + block * CB;
                for (var k = 0u; k < CB; k++) {
                    acc[k / 4u][k % 4u] += dot4I8Packed(x, weight_words[w0 + k]);
                }
            }
        }
    }
    store_block(n, oy, ox, block, acc);
}
