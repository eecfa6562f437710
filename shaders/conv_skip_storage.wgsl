// conv.wgsl's skip input (binding 5: the block's other input when RESIDUAL
// or SHORTCUT, else the input again, unread) from a storage buffer, beside
// the storage-buffer and 8-bit input parts (conv_input_texture.wgsl reads
// both from textures).

@group(0) @binding(5) var<storage, read> residual: array<vec4<act>>;

fn skip4(i: u32) -> vec4<f32> {
    return vec4<f32>(residual[i]);
}
