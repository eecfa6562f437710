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

fn weight(i: u32) -> vec4<f32> {
    let texel = vec2<f32>(f32(i % TEXTURE_WIDTH), f32(i / TEXTURE_WIDTH)) + 0.5;
    let size = vec2<f32>(f32(TEXTURE_WIDTH), f32(WEIGHT_TEXTURE_ROWS));
    return textureSampleLevel(weights, weight_sampler, texel / size, 0.0);
}
