// conv.wgsl's input: activations (`act`: f32, or f16), NHWC, read as vec4
// over channels and widened to f32.

@group(0) @binding(1) var<storage, read> src: array<vec4<act>>;

// conv_subgroup: take the pixels beside a lane's run from its neighbours
// (subgroup shuffles) rather than loading them: a storage load costs more.
const SHUFFLE_NEIGHBOURS = true;

// Input vec4 `c4` of pixel `pixel`, or zeros for a tap outside the input.
fn input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    let x = vec4<f32>(src[select(0u, pixel * (IN_C / 4u) + c4, inside)]);
    return select(vec4<f32>(0.0), x, inside);
}
