//! The CPU reference engine: plain loops over NHWC f32, one image at a time,
//! images in parallel (rayon) on native builds. Written to be obviously
//! correct; it is what the GPU engine and the Keras outputs are checked against.

use crate::engine::{check_request, softmax_in_place, Engine};
use crate::error::Result;
use crate::graph::{batch_norm_affine, Activation, Graph, Node, NodeId, Op, Tensor, Window};

pub struct CpuEngine {
    graph: Graph,
}

impl CpuEngine {
    pub fn new(graph: Graph) -> Self {
        CpuEngine { graph }
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }
}

impl Engine for CpuEngine {
    fn describe(&self) -> String {
        "cpu (reference)".into()
    }

    fn run(&mut self, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
        run_graph(&self.graph, input, batch, nodes)
    }
}

/// Runs `graph` on a batch; see [`Engine::run`].
pub fn run_graph(graph: &Graph, input: &[f32], batch: usize, nodes: &[NodeId]) -> Result<Vec<Vec<f32>>> {
    let image_len = check_request(graph, input, batch, nodes)?;
    let per_image = |x: &[f32]| run_image(graph, x, nodes);
    #[cfg(feature = "native")]
    let results: Vec<Vec<Vec<f32>>> = {
        use rayon::prelude::*;
        input.par_chunks(image_len).map(per_image).collect()
    };
    #[cfg(not(feature = "native"))]
    let results: Vec<Vec<Vec<f32>>> = input.chunks(image_len).map(per_image).collect();

    let mut out: Vec<Vec<f32>> = nodes.iter().map(|&n| Vec::with_capacity(batch * graph.nodes[n].size())).collect();
    for image in results {
        for (o, values) in out.iter_mut().zip(image) {
            o.extend_from_slice(&values);
        }
    }
    Ok(out)
}

/// Runs one image through the graph, freeing each activation after its last use.
fn run_image(graph: &Graph, x: &[f32], wanted: &[NodeId]) -> Vec<Vec<f32>> {
    let last_use = graph.last_use();
    let mut values: Vec<Option<Vec<f32>>> = vec![None; graph.nodes.len()];
    let mut kept: Vec<Option<Vec<f32>>> = vec![None; graph.nodes.len()];
    let stop = wanted.iter().copied().max().unwrap_or(0).max(graph.output);
    for (i, node) in graph.nodes.iter().enumerate().take(stop + 1) {
        let inputs: Vec<&[f32]> =
            node.inputs.iter().map(|&j| values[j].as_deref().expect("topological order")).collect();
        let in_shapes: Vec<&[usize]> = node.inputs.iter().map(|&j| graph.nodes[j].shape.as_slice()).collect();
        let y = match &node.op {
            Op::Input => x.to_vec(),
            _ => eval_node(node, &inputs, &in_shapes),
        };
        if wanted.contains(&i) {
            kept[i] = Some(y.clone());
        }
        values[i] = Some(y);
        for &j in &node.inputs {
            if last_use[j] == i {
                values[j] = None;
            }
        }
    }
    wanted.iter().map(|&n| kept[n].clone().expect("computed")).collect()
}

/// One node on one image.
fn eval_node(node: &Node, inputs: &[&[f32]], in_shapes: &[&[usize]]) -> Vec<f32> {
    let x = inputs[0];
    let mut y = match &node.op {
        Op::Input => unreachable!("handled by the caller"),
        Op::Conv2d { window, weight, bias, residual, shortcut, .. } => {
            let mut y = conv2d(x, in_shapes[0], &node.shape, window, weight, bias.as_ref());
            if *residual {
                // The unfused graph's numbers: the shortcut conv's output, then the add.
                let projected = shortcut
                    .as_ref()
                    .map(|sc| conv2d(inputs[1], in_shapes[1], &node.shape, &sc.window, &sc.weight, sc.bias.as_ref()));
                let r = projected.as_deref().unwrap_or(inputs[1]);
                y.iter_mut().zip(r).for_each(|(v, r)| *v += r);
            }
            y
        }
        Op::BatchNorm { epsilon, gamma, beta, mean, variance } => {
            let (scale, offset) = batch_norm_affine(*epsilon, gamma.as_ref(), beta.as_ref(), mean, variance);
            let c = scale.len();
            x.iter().enumerate().map(|(i, &v)| v * scale[i % c] + offset[i % c]).collect()
        }
        Op::Activation(_) | Op::Flatten => x.to_vec(),
        Op::Add { .. } => {
            let mut sum = x.to_vec();
            for other in &inputs[1..] {
                sum.iter_mut().zip(other.iter()).for_each(|(s, v)| *s += v);
            }
            sum
        }
        Op::AvgPool(window) => pool(x, in_shapes[0], &node.shape, window, false),
        Op::MaxPool(window) => pool(x, in_shapes[0], &node.shape, window, true),
        Op::GlobalAvgPool => global_avg_pool(x, in_shapes[0]),
        Op::Dense { weight, bias, .. } => dense(x, weight, bias.as_ref()),
        Op::PoolDense { weight, bias, .. } => dense(&global_avg_pool(x, in_shapes[0]), weight, bias.as_ref()),
        // int8: TFLite's reference integer semantics, the clamp included.
        Op::Quantized(q) => return crate::quant::run(q, inputs, in_shapes, &node.shape, 1),
    };
    let activation = match &node.op {
        Op::Conv2d { activation, .. }
        | Op::Dense { activation, .. }
        | Op::PoolDense { activation, .. }
        | Op::Add { activation }
        | Op::Activation(activation) => *activation,
        _ => Activation::Linear,
    };
    match activation {
        Activation::Linear => {}
        Activation::Relu => y.iter_mut().for_each(|v| *v = v.max(0.0)),
        Activation::Softmax => {
            let c = *node.shape.last().unwrap();
            y.chunks_mut(c).for_each(softmax_in_place);
        }
    }
    y
}

/// The mean of each channel over all pixels, summed pixel by pixel in order.
fn global_avg_pool(x: &[f32], in_shape: &[usize]) -> Vec<f32> {
    let c = *in_shape.last().unwrap();
    let pixels = x.len() / c;
    let mut sum = vec![0.0f32; c];
    for px in x.chunks(c) {
        sum.iter_mut().zip(px).for_each(|(s, v)| *s += v);
    }
    sum.iter().map(|s| s / pixels as f32).collect()
}

fn dense(x: &[f32], weight: &Tensor, bias: Option<&Tensor>) -> Vec<f32> {
    let (n_in, n_out) = (weight.shape[0], weight.shape[1]);
    let mut acc = bias.map_or_else(|| vec![0.0; n_out], |b| b.data.clone());
    for (&xi, row) in x[..n_in].iter().zip(weight.data.chunks(n_out)) {
        acc.iter_mut().zip(row).for_each(|(a, w)| *a += xi * w);
    }
    acc
}

fn conv2d(
    x: &[f32],
    in_shape: &[usize],
    out_shape: &[usize],
    window: &Window,
    weight: &Tensor,
    bias: Option<&Tensor>,
) -> Vec<f32> {
    let (h, w, cin) = (in_shape[0] as isize, in_shape[1] as isize, in_shape[2]);
    let (oh, ow, cout) = (out_shape[0], out_shape[1], out_shape[2]);
    let [kh, kw] = window.kernel;
    let [sh, sw] = window.strides;
    let mut y = vec![0.0f32; oh * ow * cout];
    for oy in 0..oh {
        for ox in 0..ow {
            let acc = &mut y[(oy * ow + ox) * cout..][..cout];
            if let Some(b) = bias {
                acc.copy_from_slice(&b.data);
            }
            for ky in 0..kh {
                let iy = (oy * sh + ky) as isize - window.pads.top as isize;
                if iy < 0 || iy >= h {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (ox * sw + kx) as isize - window.pads.left as isize;
                    if ix < 0 || ix >= w {
                        continue;
                    }
                    let pixel = &x[((iy * w + ix) as usize) * cin..][..cin];
                    let taps = &weight.data[(ky * kw + kx) * cin * cout..][..cin * cout];
                    for (ci, &v) in pixel.iter().enumerate() {
                        let row = &taps[ci * cout..][..cout];
                        acc.iter_mut().zip(row).for_each(|(a, wt)| *a += v * wt);
                    }
                }
            }
        }
    }
    y
}

fn pool(x: &[f32], in_shape: &[usize], out_shape: &[usize], window: &Window, max: bool) -> Vec<f32> {
    let (h, w, c) = (in_shape[0] as isize, in_shape[1] as isize, in_shape[2]);
    let (oh, ow) = (out_shape[0], out_shape[1]);
    let mut y = Vec::with_capacity(oh * ow * c);
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                let mut count = 0usize;
                for ky in 0..window.kernel[0] {
                    let iy = (oy * window.strides[0] + ky) as isize - window.pads.top as isize;
                    for kx in 0..window.kernel[1] {
                        let ix = (ox * window.strides[1] + kx) as isize - window.pads.left as isize;
                        if iy < 0 || iy >= h || ix < 0 || ix >= w {
                            continue; // padding is not counted (TensorFlow)
                        }
                        let v = x[((iy * w + ix) as usize) * c + ch];
                        acc = if max { acc.max(v) } else { acc + v };
                        count += 1;
                    }
                }
                y.push(if max { acc } else { acc / count as f32 });
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::PaddingMode;

    fn window(k: usize, s: usize, input: usize, mode: PaddingMode) -> Window {
        Window::resolve([input, input], [k, k], [s, s], mode).unwrap().0
    }

    #[test]
    fn same_pooling_does_not_count_padding() {
        let x: Vec<f32> = (1..=9).map(|v| v as f32).collect(); // 3x3x1
        let w = window(2, 2, 3, PaddingMode::Same); // pads 0 before, 1 after
        assert_eq!(pool(&x, &[3, 3, 1], &[2, 2, 1], &w, false), vec![3.0, 4.5, 7.5, 9.0]);
        assert_eq!(pool(&x, &[3, 3, 1], &[2, 2, 1], &w, true), vec![5.0, 6.0, 8.0, 9.0]);
    }

    #[test]
    fn stride_2_same_conv_pads_after() {
        // 4x4x1 input of ones, 3x3 kernel of ones, stride 2: pads 0 top/left, 1 bottom/right.
        let x = vec![1.0f32; 16];
        let w = window(3, 2, 4, PaddingMode::Same);
        let k = Tensor::new(vec![3, 3, 1, 1], vec![1.0; 9]);
        // Windows start at 0 and 2: the first sees 3x3 real cells, the last 2x2.
        assert_eq!(conv2d(&x, &[4, 4, 1], &[2, 2, 1], &w, &k, None), vec![9.0, 6.0, 6.0, 4.0]);
    }
}
