// conv.wgsl's input: the graph's 8-bit pixels as uploaded, one u32 per pixel
// (channel k in byte k, absent channels 0; IN_C is 4), widened to f32 here:
// a quarter of the f32 upload and of the first conv's input reads. Exact:
// every byte value is an f32.

@group(0) @binding(1) var<storage, read> src: array<u32>;

fn input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    let w = src[select(0u, pixel, inside)];
    let x = vec4<f32>(f32(w & 0xffu), f32((w >> 8u) & 0xffu), f32((w >> 16u) & 0xffu), f32(w >> 24u));
    return select(vec4<f32>(0.0), x, inside);
}
