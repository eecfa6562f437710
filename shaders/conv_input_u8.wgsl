// conv.wgsl's input: the graph's 8-bit pixels as uploaded, PIXEL_BYTES bytes
// per pixel back to back (the graph's channels, 1..=4: 3 KB per 32×32 RGB
// image), widened to f32 here as 4 channels (absent ones 0; IN_C is 4). A
// quarter of the f32 upload and of the first conv's input reads. Exact:
// every byte value is an f32.

override PIXEL_BYTES: u32;

@group(0) @binding(1) var<storage, read> src: array<u32>;

// conv_subgroup: neighbours' pixels by shuffle (see conv_input_f32.wgsl).
const SHUFFLE_NEIGHBOURS = true;

fn input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    let byte = select(0u, pixel * PIXEL_BYTES, inside);
    let shift = (byte % 4u) * 8u;
    var w = src[byte / 4u] >> shift;
    // A pixel that straddles two words (never with 1, 2 or 4 bytes per
    // pixel, so the compiler drops this). The host stores whole words, so
    // the next one exists whenever a pixel's bytes reach into it.
    if (shift + PIXEL_BYTES * 8u > 32u) {
        w |= src[byte / 4u + 1u] << (32u - shift);
    }
    let kept = 0xffffffffu >> ((4u - PIXEL_BYTES) * 8u);
    let x = w & kept;
    let v = vec4<f32>(f32(x & 0xffu), f32((x >> 8u) & 0xffu), f32((x >> 16u) & 0xffu), f32(x >> 24u));
    return select(vec4<f32>(0.0), v, inside);
}
