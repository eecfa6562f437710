// conv.wgsl's weights in a storage buffer: any size the adapter binds,
// stored as `act` (f32, or f16 with --precision f16), read as f32.

@group(0) @binding(2) var<storage, read> weights: array<vec4<act>>;

fn weight(i: u32) -> vec4<f32> {
    return vec4<f32>(weights[i]);
}
