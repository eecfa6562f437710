// conv.wgsl's weights in a 2D texture of WEIGHT_TEXTURE_WIDTH texels per row
// (rgba32float, or rgba16float with --precision f16), one vec4 per texel,
// read with textureLoad. SwiftShader (Chromium's WebGPU without a GPU) reads
// a storage buffer at an index that varies at run time (every weight index
// does: it does not unroll loops) one lane at a time behind a branch each,
// but fetches texels for all lanes without branches. The lowering declines
// layers whose weights need more rows than the adapter's 2D textures have.

@group(0) @binding(2) var weights: texture_2d<f32>;

fn weight(i: u32) -> vec4<f32> {
    return textureLoad(weights, vec2<u32>(i % WEIGHT_TEXTURE_WIDTH, i / WEIGHT_TEXTURE_WIDTH), 0);
}
