// conv.wgsl's weights in a storage buffer: any size the adapter binds.

@group(0) @binding(2) var<storage, read> weights: array<vec4<f32>>;

fn weight(i: u32) -> vec4<f32> {
    return weights[i];
}
