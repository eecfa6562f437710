// conv.wgsl's input: f32 activations, NHWC, read as vec4 over channels.

@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;

// Input vec4 `c4` of pixel `pixel`, or zeros for a tap outside the input.
fn input4(pixel: u32, c4: u32, inside: bool) -> vec4<f32> {
    let x = src[select(0u, pixel * (IN_C / 4u) + c4, inside)];
    return select(vec4<f32>(0.0), x, inside);
}
