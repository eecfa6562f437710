// conv.wgsl's input and skip input (binding 5: residual or shortcut input)
// from 2D textures (rgba32float, f32 activations): the NHWC values as vec4
// texels over channels, TEXTURE_WIDTH texels per row, filled by a copy of
// the producer's output buffer after it ran. Why: lavapipe
// reads a storage buffer at an index that varies across lanes one lane and
// one component at a time, each behind a bounds check, but fetches texels
// for all lanes at once: on lavapipe `conv_subgroup`'s input loads were
// about 45% of its time.

@group(0) @binding(1) var src: texture_2d<f32>;

// conv_subgroup: load the pixels beside a lane's run instead of shuffling
// them in from the neighbouring lanes. On lavapipe (Mesa 22) a subgroup
// shuffle by a lane-varying index is a loop over the lanes with a store to
// the stack and a reload per lane, and a texel fetch one 128-bit load per lane.
const SHUFFLE_NEIGHBOURS = false;
@group(0) @binding(5) var skip: texture_2d<f32>;

fn texel(t: texture_2d<f32>, i: u32) -> vec4<f32> {
    return textureLoad(t, vec2<u32>(i & (TEXTURE_WIDTH - 1u), i >> TEXTURE_WIDTH_LOG2), 0);
}

// Input vec4 `c4` of pixel `pixel`, or zeros for a tap outside the input.
fn input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    let x = texel(src, select(0u, pixel * (IN_C / 4u) + c4, inside));
    return select(vec4<f32>(0.0), x, inside);
}

fn skip4(i: u32) -> vec4<f32> {
    return texel(skip, i);
}
