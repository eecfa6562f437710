// int8 ops with TFLite's reference-kernel integer semantics, equal bit for
// bit to the CPU int8 engine (src/quant.rs). int8 activations are stored
// packed, 4 per u32 word (value i of the batch is byte i % 4 of word i / 4,
// little-endian), so every kernel that writes them writes whole words: the
// element-wise ones compute 4 consecutive values per invocation. The model's
// f32 input (int8_quantize) and f32 output (int8_dequantize) travel as the
// f32 bits in the same u32 words. WGSL has no i64: the 64-bit products of the
// fixed-point requantization are built from 16-bit limbs in vec2<u32> (lo,
// hi), two's complement.
//
// q: the per-node integer parameters (zero points, clamp range, multipliers),
// laid out per entry point as src/engine/gpu/lower.rs writes them.

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst: array<u32>;
@group(0) @binding(6) var<storage, read> q: array<i32>;

// ---- packed int8 storage ----

// Byte i % 4 of a word, sign-extended (shifts, not extractBits: every target has them).
fn byte_of(word: u32, i: u32) -> i32 {
    return (bitcast<i32>(word) << (24u - (i & 3u) * 8u)) >> 24u;
}

// int8 value i of src.
fn load_q(i: u32) -> i32 {
    return byte_of(src[i >> 2u], i);
}

// Four int8 values (each in -128..=127) as one word, value 0 in the low byte.
fn pack_q(v: vec4<i32>) -> u32 {
    let b = bitcast<vec4<u32>>(v) & vec4<u32>(0xffu);
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

// ---- 64-bit helpers ----

// The unsigned 64-bit product of a and b, as (lo, hi).
fn umul_wide(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    return vec2<u32>((p00 & 0xffffu) | (mid << 16u), p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u));
}

fn add64(a: vec2<u32>, b: vec2<u32>) -> vec2<u32> {
    let lo = a.x + b.x;
    return vec2<u32>(lo, a.y + b.y + select(0u, 1u, lo < a.x));
}

fn neg64(a: vec2<u32>) -> vec2<u32> {
    return add64(vec2<u32>(~a.x, ~a.y), vec2<u32>(1u, 0u));
}

// The signed 64-bit product of two i32 (abs of i32 min is itself, whose u32 is 2^31).
fn imul_wide(a: i32, b: i32) -> vec2<u32> {
    let m = umul_wide(u32(abs(a)), u32(abs(b)));
    return select(m, neg64(m), (a < 0) != (b < 0));
}

// The low 32 bits of a >> s (arithmetic), 0 < s < 64.
fn sra64(a: vec2<u32>, s: u32) -> i32 {
    if (s >= 32u) {
        return bitcast<i32>(a.y) >> (s - 32u);
    }
    return bitcast<i32>((a.x >> s) | (a.y << (32u - s)));
}

// 1 << s as a 64-bit value, s < 64.
fn pot64(s: u32) -> vec2<u32> {
    if (s >= 32u) {
        return vec2<u32>(0u, 1u << (s - 32u));
    }
    return vec2<u32>(1u << s, 0u);
}

// ---- gemmlowp / TFLite fixed point ----

// The high 32 bits of 2ab, rounded; (ab + nudge) / 2^31 truncating toward zero.
fn srdhm(a: i32, b: i32) -> i32 {
    if (a == b && a == (-2147483647 - 1)) {
        return 2147483647;
    }
    let m = umul_wide(u32(abs(a)), u32(abs(b)));
    let negative = ((a < 0) != (b < 0)) && (m.x != 0u || m.y != 0u);
    // |ab| + 2^30 (ab >= 0) or |ab| + 2^30 − 1 (ab < 0), then >> 31 and the sign.
    let t = add64(m, vec2<u32>(select(1u << 30u, (1u << 30u) - 1u, negative), 0u));
    let r = bitcast<i32>((t.x >> 31u) | (t.y << 1u));
    return select(r, -r, negative);
}

// x / 2^e rounded half away from zero, 0 <= e <= 31.
fn rounding_divide_by_pot(x: i32, e: i32) -> i32 {
    let mask = bitcast<i32>((1u << u32(e)) - 1u);
    let remainder = x & mask;
    let threshold = (mask >> 1u) + select(0, 1, x < 0);
    return (x >> u32(e)) + select(0, 1, remainder > threshold);
}

// TFLite's MultiplyByQuantizedMultiplier (two roundings).
fn requant(x: i32, multiplier: i32, shift: i32) -> i32 {
    let left = max(shift, 0);
    let right = max(-shift, 0);
    return rounding_divide_by_pot(srdhm(x * (1 << u32(left)), multiplier), right);
}

// The single-rounding form (x × m + 2^(s−1)) >> s, s = 31 − shift.
fn requant_single_rounding(x: i32, multiplier: i32, shift: i32) -> i32 {
    let s = u32(31 - shift);
    return sra64(add64(imul_wide(x, multiplier), pot64(s - 1u)), s);
}

fn saturating_shift_left(x: i32, e: u32) -> i32 {
    let threshold = (1 << (31u - e)) - 1;
    if (x > threshold) {
        return 2147483647;
    }
    if (x < -threshold) {
        return -2147483647 - 1;
    }
    return x << e;
}

// Rescale between integer-bit counts.
fn rescale(raw: i32, from_bits: i32, to_bits: i32) -> i32 {
    let e = from_bits - to_bits;
    if (e > 0) {
        return saturating_shift_left(raw, u32(e));
    }
    if (e < 0) {
        return rounding_divide_by_pot(raw, -e);
    }
    return raw;
}

fn exp_quarter(a: i32) -> i32 {
    let constant_term = 1895147668;
    let one_third = 715827883;
    let x = a + (1 << 28u);
    let x2 = srdhm(x, x);
    let x3 = srdhm(x2, x);
    let x4 = srdhm(x2, x2);
    let x4_over_4 = rounding_divide_by_pot(x4, 2);
    let poly = rounding_divide_by_pot(srdhm(x4_over_4 + x3, one_third) + x2, 1);
    return constant_term + srdhm(constant_term, x + poly);
}

const EXP_BARREL: array<i32, 7> = array<i32, 7>(1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242);

// exp(a), a <= 0 with 5 integer bits; 0 integer bits out.
fn exp_on_negative_values(a: i32) -> i32 {
    let fractional_bits = 26u;
    let one_quarter = 1 << (fractional_bits - 2u);
    let mask = one_quarter - 1;
    let a_mod = (a & mask) - one_quarter;
    var result = exp_quarter(rescale(a_mod, 5, 0));
    let remainder = a_mod - a;
    for (var k = 0u; k < 7u; k++) {
        // exponents -2 ..= 4
        if ((remainder & (1 << (fractional_bits - 2u + k))) != 0) {
            result = srdhm(result, EXP_BARREL[k]);
        }
    }
    return select(result, 2147483647, a == 0);
}

fn one_over_one_plus_x(a: i32) -> i32 {
    let sum = i64_half_sum(a);
    let c48_over_17 = 1515870810;
    let cneg32_over_17 = -1010580540;
    let one_f2 = 1 << 29u;
    var x = c48_over_17 + srdhm(sum, cneg32_over_17);
    for (var i = 0; i < 3; i++) {
        let one_minus = one_f2 - srdhm(sum, x);
        x = x + rescale(srdhm(x, one_minus), 4, 2);
    }
    return rescale(x, 1, 0);
}

// (a + i32 max + sign) / 2 in 64 bits (gemmlowp's RoundingHalfSum with One()).
fn i64_half_sum(a: i32) -> i32 {
    // a + 2147483647 lies in [-1, 2^32 - 2]: as 64 bits, then (sum ± 1) / 2 toward zero.
    let s = add64(vec2<u32>(bitcast<u32>(a), select(0u, 0xffffffffu, a < 0)), vec2<u32>(2147483647u, 0u));
    let negative = (s.y & 0x80000000u) != 0u;
    if (negative) {
        // sum = -1: (-1 - 1) / 2 = -1
        return -1;
    }
    let t = add64(s, vec2<u32>(1u, 0u));
    return bitcast<i32>((t.x >> 1u) | (t.y << 31u));
}

// ---- entry points ----

// The element-wise kernels: invocation w computes values 4w .. 4w + 3 of the
// batch (those below p.len) with one of these, and writes them as word w.

// q: [scale bits, zero point]. Round half away from zero, as TFLite quantizes.
fn quantize_value(i: u32) -> i32 {
    let r = bitcast<f32>(src[i]) / bitcast<f32>(q[0]);
    let t = trunc(r);
    let rounded = t + select(0.0, sign(r), abs(r - t) >= 0.5);
    return clamp(i32(rounded) + q[1], -128, 127);
}

@compute @workgroup_size(WG)
fn int8_quantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = quantize_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// q: [scale bits, zero point]. One f32 per invocation.
@compute @workgroup_size(WG)
fn int8_dequantize(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    dst[i] = bitcast<u32>(bitcast<f32>(q[0]) * f32(load_q(i) - q[1]));
}

// q: [zero point 1, zero point 2, output zero point, min, max, m1, s1, m2, s2, m_out, s_out].
@group(0) @binding(2) var<storage, read> src2: array<u32>;

fn add_value(i: u32) -> i32 {
    let b_in = byte_of(src2[i >> 2u], i);
    let a = requant((load_q(i) - q[0]) * (1 << 20u), q[5], q[6]);
    let b = requant((b_in - q[1]) * (1 << 20u), q[7], q[8]);
    return clamp(requant(a + b, q[9], q[10]) + q[2], q[3], q[4]);
}

@compute @workgroup_size(WG)
fn int8_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = add_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// q: [min, max]. The average rounded half away from zero over the in-image taps.
fn avg_pool_value(i: u32) -> i32 {
    let c = i % p.out_c;
    let ox = (i / p.out_c) % p.out_w;
    let oy = (i / (p.out_c * p.out_w)) % p.out_h;
    let n = i / (p.out_c * p.out_w * p.out_h);
    var acc = 0;
    var count = 0;
    for (var ky = 0u; ky < p.k_h; ky++) {
        let iy = i32(oy * p.stride_h + ky) - i32(p.pad_top);
        for (var kx = 0u; kx < p.k_w; kx++) {
            let ix = i32(ox * p.stride_w + kx) - i32(p.pad_left);
            if (iy >= 0 && iy < i32(p.in_h) && ix >= 0 && ix < i32(p.in_w)) {
                acc += load_q(((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c + c);
                count++;
            }
        }
    }
    var avg = 0;
    if (count > 0) {
        avg = select((acc - count / 2) / count, (acc + count / 2) / count, acc > 0);
    }
    return clamp(avg, q[0], q[1]);
}

@compute @workgroup_size(WG)
fn int8_avg_pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = avg_pool_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// q: [input_multiplier, input_left_shift, diff_min]. Value i of its row of
// p.out_c values: the row's max and sum are recomputed per value (rows are
// not word-aligned, and a row of logits is short).
fn softmax_value(i: u32) -> i32 {
    let base = (i / p.out_c) * p.out_c;
    var max_v = -128;
    for (var c = 0u; c < p.out_c; c++) {
        max_v = max(max_v, load_q(base + c));
    }
    var sum = 0;
    for (var c = 0u; c < p.out_c; c++) {
        let diff = load_q(base + c) - max_v;
        if (diff >= q[2]) {
            let d = srdhm(diff * (1 << u32(q[1])), q[0]);
            sum += rescale(exp_on_negative_values(d), 0, 12);
        }
    }
    let headroom_plus_one = countLeadingZeros(bitcast<u32>(sum));
    let num_bits_over_unit = 12 - i32(headroom_plus_one);
    var shifted = 0u;
    if (headroom_plus_one < 32u) {
        shifted = bitcast<u32>(sum) << headroom_plus_one;
    }
    let shifted_scale = one_over_one_plus_x(bitcast<i32>(shifted - 0x80000000u));
    let diff = load_q(i) - max_v;
    var out = -128;
    if (diff >= q[2]) {
        let d = srdhm(diff * (1 << u32(q[1])), q[0]);
        let unsat = rounding_divide_by_pot(srdhm(shifted_scale, exp_on_negative_values(d)), num_bits_over_unit + 31 - 8);
        out = clamp(unsat - 128, -128, 127);
    }
    return out;
}

@compute @workgroup_size(WG)
fn int8_softmax(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = softmax_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// Weighted ops: weights (int8 values as i32), int32 bias, per-channel (multiplier, shift).
@group(0) @binding(3) var<storage, read> bias: array<i32>;
@group(0) @binding(5) var<storage, read> requant_of: array<vec2<i32>>;
@group(0) @binding(7) var<storage, read> weight: array<i32>;

// q: [input zero point, output zero point, min, max]. Weights (kh, kw, cin, cout).
fn conv_value(i: u32) -> i32 {
    let oc = i % p.out_c;
    let ox = (i / p.out_c) % p.out_w;
    let oy = (i / (p.out_c * p.out_w)) % p.out_h;
    let n = i / (p.out_c * p.out_w * p.out_h);
    var acc = 0;
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
            let px = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            let wk = (ky * p.k_w + kx) * p.in_c * p.out_c + oc;
            for (var ic = 0u; ic < p.in_c; ic++) {
                acc += weight[wk + ic * p.out_c] * (load_q(px + ic) - q[0]);
            }
        }
    }
    acc += bias[oc];
    let r = requant_of[oc];
    return clamp(requant(acc, r.x, r.y) + q[1], q[2], q[3]);
}

@compute @workgroup_size(WG)
fn int8_conv(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = conv_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// q: [input zero point, output zero point, min, max]. Weights (out, in); single-rounding requant.
fn dense_value(i: u32) -> i32 {
    let j = i % p.out_c;
    let n = i / p.out_c;
    var acc = 0;
    for (var k = 0u; k < p.in_c; k++) {
        acc += weight[j * p.in_c + k] * (load_q(n * p.in_c + k) - q[0]);
    }
    acc += bias[j];
    let r = requant_of[0];
    return clamp(requant_single_rounding(acc, r.x, r.y) + q[1], q[2], q[3]);
}

@compute @workgroup_size(WG)
fn int8_dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let w = flat_index(gid, nwg);
    if (w * 4u >= p.len) {
        return;
    }
    var v = vec4<i32>(0);
    for (var j = 0u; j < 4u; j++) {
        if (w * 4u + j < p.len) {
            v[j] = dense_value(w * 4u + j);
        }
    }
    dst[w] = pack_q(v);
}

// The blocked int8 conv: one output pixel × CB output channels per
// invocation (CB / 4 whole output words), weights packed 4 channels per word
// ((kh, kw, cin, cout / 4), sign-extended by shifts), so each input value is
// loaded once per CB channels. Same integer arithmetic as int8_conv, in the
// same order.
@group(0) @binding(8) var<storage, read> weight_words: array<u32>;

@compute @workgroup_size(WG)
fn int8_conv_block(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p.len) {
        return;
    }
    let blocks = p.out_c / CB;
    let block = i % blocks;
    let ox = (i / blocks) % p.out_w;
    let oy = (i / (blocks * p.out_w)) % p.out_h;
    let n = i / (blocks * p.out_w * p.out_h);
    let words_per_tap = p.out_c / 4u;
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
            let px = ((n * p.in_h + u32(iy)) * p.in_w + u32(ix)) * p.in_c;
            let wk = (ky * p.k_w + kx) * p.in_c * words_per_tap + block * (CB / 4u);
            for (var ic = 0u; ic < p.in_c; ic++) {
                let x = load_q(px + ic) - q[0];
                let w0 = wk + ic * words_per_tap;
                for (var k = 0u; k < CB / 4u; k++) {
                    let w = bitcast<i32>(weight_words[w0 + k]);
                    let wv = vec4<i32>(w << 24u, w << 16u, w << 8u, w) >> vec4<u32>(24u);
                    acc[k] += wv * x;
                }
            }
        }
    }
    store_block(n, oy, ox, block, acc);
}

// The CB channels of one output pixel: requantized, clamped, as CB / 4 words.
fn store_block(n: u32, oy: u32, ox: u32, block: u32, acc: array<vec4<i32>, CB / 4u>) {
    let out_word = (((n * p.out_h + oy) * p.out_w + ox) * p.out_c + block * CB) / 4u;
    for (var k = 0u; k < CB / 4u; k++) {
        var v = vec4<i32>(0);
        for (var j = 0u; j < 4u; j++) {
            let oc = block * CB + k * 4u + j;
            let r = requant_of[oc];
            v[j] = clamp(requant(acc[k][j] + bias[oc], r.x, r.y) + q[1], q[2], q[3]);
        }
        dst[out_word + k] = pack_q(v);
    }
}
