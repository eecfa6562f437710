// conv.wgsl's weights in a 2D texture of TEXTURE_WIDTH texels per row
// and WEIGHT_TEXTURE_ROWS rows (both powers of two; rgba32float, or
// rgba16float with --precision f16), one vec4 per texel, sampled at texel
// centres with a nearest, unfiltered sampler at level 0: exactly the stored
// values (the coordinates are exact binary fractions).
// Why a texture: the CPU drivers read a storage buffer at an index that
// varies at run time one lane at a time, behind a branch each (SwiftShader,
// Chromium's WebGPU without a GPU, for every weight index: it does not
// unroll loops; lavapipe for every index, with a bounds check per
// component), but sample a texture for all lanes with one gather. Why sampled, not
// textureLoad: browsers clamp every textureLoad's coordinates and level
// against two texture queries first; sampling needs no check (the sampler
// clamps). The lowering declines layers whose weights need a larger texture
// than the adapter's 2D textures.

override WEIGHT_TEXTURE_ROWS: u32;

@group(0) @binding(2) var weights: texture_2d<f32>;
@group(0) @binding(6) var weight_sampler: sampler;

// The texel of index i, worked out in f32 (exact: the lowering keeps every
// index below 2^24): SwiftShader shifts and converts an unsigned integer
// vector one lane at a time, but converts a signed one, floors and
// multiplies all lanes at once (about 7% of its instructions in ResNet8).
fn weight(i: u32) -> vec4<f32> {
    let f = f32(i32(i));
    let row = floor(f * (1.0 / f32(TEXTURE_WIDTH)));
    let texel = vec2<f32>(f - row * f32(TEXTURE_WIDTH), row) + 0.5;
    let size = vec2<f32>(f32(TEXTURE_WIDTH), f32(WEIGHT_TEXTURE_ROWS));
    return textureSampleLevel(weights, weight_sampler, texel / size, 0.0);
}
