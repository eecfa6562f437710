// Every conv kernel's fused projection shortcut (passes::fuse_shortcut),
// prepended to conv.wgsl and conv2d.wgsl. SHORTCUT: the conv's second input
// (binding 5, `residual`) is the block's input, SC_H × SC_W × SC_C, and is
// added through the block's 1×1 shortcut conv (stride SC_SH × SC_SW,
// unpadded), which the kernel computes: the shortcut's weights follow the
// conv's own from vec4 SC_WEIGHT4 on (same row stride), its bias follows the
// conv's from vec4 SC_BIAS4 on. The defaults mean no shortcut, so other
// pipelines need not set them.

override SHORTCUT: bool = false;
override SC_H: u32 = 1u;
override SC_W: u32 = 1u;
override SC_C: u32 = 4u;
override SC_SH: u32 = 1u;
override SC_SW: u32 = 1u;
override SC_WEIGHT4: u32 = 0u;
override SC_BIAS4: u32 = 0u;
