// conv.wgsl's weights in a uniform buffer of UNIFORM_WEIGHTS vec4s (64 KiB, the
// WebGPU default binding limit). Uniform reads with an index the compiler can
// prove equal across invocations become one load and a broadcast on SIMD-on-CPU
// drivers (lavapipe, SwiftShader), where storage reads are gathered lane by lane.
// The lowering declines layers whose weights do not fit.

@group(0) @binding(2) var<uniform> weights: array<vec4<f32>, UNIFORM_WEIGHTS>;

fn weight(i: u32) -> vec4<f32> {
    return weights[i];
}
