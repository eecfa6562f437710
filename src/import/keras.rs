//! Keras functional `model_config` JSON → [`Graph`].
//!
//! The graph is built by following each layer's `inbound_nodes`, so any
//! single-input, single-output functional model made of the supported layers
//! imports, not just ResNet8. Shapes are inferred layer by layer and every
//! weight is checked against the shape its layer implies.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::graph::{Activation, Graph, Node, NodeId, Op, PaddingMode, Tensor, Window};

pub const SUPPORTED_LAYERS: &str = "InputLayer, Conv2D, BatchNormalization, Activation, Add, \
AveragePooling2D, MaxPooling2D, GlobalAveragePooling2D, Flatten, Dense";

/// Where the importer gets a layer's weights from (the `.h5` file, or a
/// converted `.safetensors`): Keras short names (`kernel`, `bias`, `gamma`,
/// `beta`, `moving_mean`, `moving_variance`) to tensors in Keras layout.
pub trait WeightSource {
    fn layer_weights(&self, layer: &str) -> Result<BTreeMap<String, Tensor>>;
}

/// One Keras layer as written in the config.
struct LayerSpec {
    name: String,
    class: String,
    config: Value,
    inbound: Vec<String>,
}

/// Builds the graph for `model_config` (the JSON text stored in the `.h5`'s
/// root attribute), taking weights from `weights`.
pub fn graph_from_config(model_config: &str, weights: &dyn WeightSource) -> Result<Graph> {
    let root: Value = serde_json::from_str(model_config).map_err(|e| Error::Config(format!("not valid JSON: {e}")))?;
    let class = root["class_name"].as_str().unwrap_or("");
    if !matches!(class, "Functional" | "Model") {
        return Err(Error::Config(format!(
            "top-level class is '{class}'; only functional models (class 'Functional' or 'Model') are supported"
        )));
    }
    let config = &root["config"];
    let model_name = config["name"].as_str().unwrap_or("model").to_string();
    let layers = config["layers"].as_array().ok_or_else(|| Error::Config("config has no 'layers' list".into()))?;
    let specs: Vec<LayerSpec> = layers.iter().map(parse_layer_spec).collect::<Result<_>>()?;

    let inputs = endpoint_names(&config["input_layers"], "input_layers")?;
    let outputs = endpoint_names(&config["output_layers"], "output_layers")?;
    if inputs.len() != 1 || outputs.len() != 1 {
        return Err(Error::Config(format!(
            "the model has {} inputs and {} outputs; only single-input, single-output models are supported",
            inputs.len(),
            outputs.len()
        )));
    }

    let by_name: HashMap<&str, usize> = specs.iter().enumerate().map(|(i, s)| (s.name.as_str(), i)).collect();
    let order = topological_order(&specs, &by_name, &outputs[0])?;

    let mut builder = Builder { nodes: Vec::new(), output_of: HashMap::new() };
    let mut input_id = None;
    for &i in &order {
        let spec = &specs[i];
        let id = builder.add_layer(spec, weights)?;
        if spec.class == "InputLayer" {
            if spec.name != inputs[0] {
                return Err(Error::Config(format!(
                    "input layer '{}' is not the model's declared input '{}'",
                    spec.name, inputs[0]
                )));
            }
            input_id = Some(id);
        }
    }
    let input = input_id
        .ok_or_else(|| Error::Config(format!("the output '{}' does not depend on an InputLayer", outputs[0])))?;
    let output = builder.output_of[outputs[0].as_str()];
    Ok(Graph { name: model_name, nodes: builder.nodes, input, output })
}

fn parse_layer_spec(layer: &Value) -> Result<LayerSpec> {
    let class =
        layer["class_name"].as_str().ok_or_else(|| Error::Config("a layer has no class_name".into()))?.to_string();
    let name = layer["name"]
        .as_str()
        .or_else(|| layer["config"]["name"].as_str())
        .ok_or_else(|| Error::Config(format!("a {class} layer has no name")))?
        .to_string();
    let nodes = layer["inbound_nodes"].as_array().cloned().unwrap_or_default();
    if nodes.len() > 1 {
        return Err(Error::layer(&name, format!("is called {} times; shared layers are not supported", nodes.len())));
    }
    let mut inbound = Vec::new();
    if let Some(node) = nodes.first() {
        collect_inbound(node, &mut inbound);
        if inbound.is_empty() {
            return Err(Error::layer(&name, "has an inbound node that names no layer"));
        }
    }
    Ok(LayerSpec { name, class, config: layer["config"].clone(), inbound })
}

/// Collects the source layer names of one call node. tf.keras 2 writes
/// `[["conv2d", 0, 0, {}], ...]`; Keras 3 writes `{"args": [{"class_name":
/// "__keras_tensor__", "config": {"keras_history": ["conv2d", 0, 0]}}]}`.
fn collect_inbound(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(items) => {
            if let (Some(Value::String(name)), Some(Value::Number(_))) = (items.first(), items.get(1)) {
                out.push(name.clone());
            } else {
                items.iter().for_each(|i| collect_inbound(i, out));
            }
        }
        Value::Object(map) => {
            if let Some(Value::Array(h)) = map.get("config").and_then(|c| c.get("keras_history")) {
                if let Some(Value::String(name)) = h.first() {
                    out.push(name.clone());
                }
            } else if let Some(args) = map.get("args") {
                collect_inbound(args, out);
            }
        }
        _ => {}
    }
}

/// `input_layers`/`output_layers`: `[["input_1", 0, 0]]`, or `["input_1", 0, 0]`.
fn endpoint_names(v: &Value, what: &str) -> Result<Vec<String>> {
    let arr = v.as_array().ok_or_else(|| Error::Config(format!("config has no '{what}'")))?;
    if let Some(Value::String(name)) = arr.first() {
        return Ok(vec![name.clone()]);
    }
    arr.iter()
        .map(|e| {
            e.get(0)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::Config(format!("malformed entry in '{what}': {e}")))
        })
        .collect()
}

/// Layers the output depends on, dependencies first.
fn topological_order(specs: &[LayerSpec], by_name: &HashMap<&str, usize>, output: &str) -> Result<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    let mut mark = vec![Mark::New; specs.len()];
    let mut order = Vec::new();
    let start = *by_name
        .get(output)
        .ok_or_else(|| Error::Config(format!("output layer '{output}' is not in the layer list")))?;
    // Iterative DFS: (layer, next inbound index to visit).
    let mut stack = vec![(start, 0usize)];
    mark[start] = Mark::Active;
    while let Some(&mut (i, ref mut next)) = stack.last_mut() {
        if let Some(src) = specs[i].inbound.get(*next) {
            *next += 1;
            let j = *by_name
                .get(src.as_str())
                .ok_or_else(|| Error::layer(&specs[i].name, format!("takes input from unknown layer '{src}'")))?;
            match mark[j] {
                Mark::New => {
                    mark[j] = Mark::Active;
                    stack.push((j, 0));
                }
                Mark::Active => return Err(Error::layer(&specs[j].name, "is part of a cycle")),
                Mark::Done => {}
            }
        } else {
            mark[i] = Mark::Done;
            order.push(i);
            stack.pop();
        }
    }
    Ok(order)
}

struct Builder {
    nodes: Vec<Node>,
    /// Keras layer name → the node holding that layer's output.
    output_of: HashMap<String, NodeId>,
}

impl Builder {
    fn push(&mut self, name: String, layer: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        self.nodes.push(Node { name, layers: vec![layer.to_string()], op, inputs, shape });
        self.nodes.len() - 1
    }

    fn add_layer(&mut self, spec: &LayerSpec, weights: &dyn WeightSource) -> Result<NodeId> {
        let name = spec.name.as_str();
        let cfg = &spec.config;
        let inputs: Vec<NodeId> = spec.inbound.iter().map(|s| self.output_of[s.as_str()]).collect();
        let in_shapes: Vec<Vec<usize>> = inputs.iter().map(|&i| self.nodes[i].shape.clone()).collect();
        let expect_inputs = |n: usize| -> Result<()> {
            if inputs.len() != n {
                return Err(Error::layer(name, format!("expects {n} input(s), has {}", inputs.len())));
            }
            Ok(())
        };
        let feature_map = |shape: &[usize]| -> Result<[usize; 3]> {
            match *shape {
                [h, w, c] => Ok([h, w, c]),
                _ => Err(Error::layer(name, format!("needs an (h, w, c) input, got {shape:?}"))),
            }
        };
        let take = |expected: &[(&str, Vec<usize>)], optional: &[&str]| -> Result<BTreeMap<String, Tensor>> {
            let mut got = weights.layer_weights(name)?;
            let mut out = BTreeMap::new();
            for (wname, shape) in expected {
                let t = got.remove(*wname).ok_or_else(|| Error::Weight {
                    layer: name.into(),
                    weight: (*wname).into(),
                    detail: "is missing from the weights".into(),
                })?;
                if &t.shape != shape {
                    return Err(Error::Weight {
                        layer: name.into(),
                        weight: (*wname).into(),
                        detail: format!("has shape {:?}, but the layer needs {:?}", t.shape, shape),
                    });
                }
                out.insert(wname.to_string(), t);
            }
            if let Some(extra) = got.keys().find(|k| !optional.contains(&k.as_str())) {
                return Err(Error::Weight {
                    layer: name.into(),
                    weight: extra.clone(),
                    detail: "is not a weight this layer's config uses".into(),
                });
            }
            Ok(out)
        };

        let (op, shape) = match spec.class.as_str() {
            "InputLayer" => {
                let dims = cfg
                    .get("batch_input_shape")
                    .or_else(|| cfg.get("batch_shape"))
                    .and_then(Value::as_array)
                    .ok_or_else(|| Error::layer(name, "has no batch_input_shape"))?;
                let shape: Vec<usize> = dims[1..]
                    .iter()
                    .map(|d| d.as_u64().map(|d| d as usize).filter(|&d| d > 0))
                    .collect::<Option<_>>()
                    .ok_or_else(|| Error::layer(name, format!("input shape {dims:?} must be fully known")))?;
                if shape.len() != 3 {
                    return Err(Error::layer(name, format!("input shape {shape:?} is not (h, w, c)")));
                }
                (Op::Input, shape)
            }
            "Conv2D" => {
                expect_inputs(1)?;
                let [h, w, cin] = feature_map(&in_shapes[0])?;
                check_channels_last(name, cfg)?;
                if pair(cfg, "dilation_rate", name)?.unwrap_or([1, 1]) != [1, 1] {
                    return Err(Error::layer(name, "dilated convolution is not supported"));
                }
                if cfg["groups"].as_u64().unwrap_or(1) != 1 {
                    return Err(Error::layer(name, "grouped convolution is not supported"));
                }
                let filters = usize_field(cfg, "filters", name)?;
                let kernel = pair(cfg, "kernel_size", name)?.ok_or_else(|| Error::layer(name, "has no kernel_size"))?;
                let strides = pair(cfg, "strides", name)?.unwrap_or([1, 1]);
                let mode = padding_mode(cfg, name)?;
                let (window, [oh, ow]) = Window::resolve([h, w], kernel, strides, mode).ok_or_else(|| {
                    Error::layer(
                        name,
                        format!("a {kernel:?} window with strides {strides:?} does not fit a {h}x{w} input"),
                    )
                })?;
                let use_bias = cfg["use_bias"].as_bool().unwrap_or(true);
                let activation = activation_field(cfg, name)?;
                let mut expected = vec![("kernel", vec![kernel[0], kernel[1], cin, filters])];
                if use_bias {
                    expected.push(("bias", vec![filters]));
                }
                let mut w = take(&expected, &[])?;
                let op = Op::Conv2d {
                    window,
                    weight: w.remove("kernel").unwrap(),
                    bias: w.remove("bias"),
                    activation,
                    residual: false,
                };
                return Ok(self.with_activation(name, op, inputs, vec![oh, ow, filters], activation));
            }
            "Dense" => {
                expect_inputs(1)?;
                let [n_in] = in_shapes[0][..] else {
                    return Err(Error::layer(
                        name,
                        format!("Dense on a {:?} input is not supported (flatten it first)", in_shapes[0]),
                    ));
                };
                let units = usize_field(cfg, "units", name)?;
                let use_bias = cfg["use_bias"].as_bool().unwrap_or(true);
                let activation = activation_field(cfg, name)?;
                let mut expected = vec![("kernel", vec![n_in, units])];
                if use_bias {
                    expected.push(("bias", vec![units]));
                }
                let mut w = take(&expected, &[])?;
                let op = Op::Dense { weight: w.remove("kernel").unwrap(), bias: w.remove("bias"), activation };
                return Ok(self.with_activation(name, op, inputs, vec![units], activation));
            }
            "BatchNormalization" => {
                expect_inputs(1)?;
                let shape = in_shapes[0].clone();
                let rank = shape.len() as i64;
                let axis = match &cfg["axis"] {
                    Value::Array(a) if a.len() == 1 => a[0].as_i64(),
                    Value::Number(n) => n.as_i64(),
                    _ => None,
                };
                if !matches!(axis, Some(a) if a == -1 || a == rank) {
                    return Err(Error::layer(
                        name,
                        format!("normalises axis {}; only the channel (last) axis is supported", cfg["axis"]),
                    ));
                }
                let channels = *shape.last().unwrap();
                let epsilon = cfg["epsilon"].as_f64().unwrap_or(1e-3) as f32;
                let center = cfg["center"].as_bool().unwrap_or(true);
                let scale = cfg["scale"].as_bool().unwrap_or(true);
                let mut expected = vec![("moving_mean", vec![channels]), ("moving_variance", vec![channels])];
                if scale {
                    expected.push(("gamma", vec![channels]));
                }
                if center {
                    expected.push(("beta", vec![channels]));
                }
                let mut w = take(&expected, &[])?;
                let op = Op::BatchNorm {
                    epsilon,
                    gamma: w.remove("gamma"),
                    beta: w.remove("beta"),
                    mean: w.remove("moving_mean").unwrap(),
                    variance: w.remove("moving_variance").unwrap(),
                };
                (op, shape)
            }
            "Activation" => {
                expect_inputs(1)?;
                let a = activation_field(cfg, name)?;
                (Op::Activation(a), in_shapes[0].clone())
            }
            "Add" => {
                if inputs.len() < 2 {
                    return Err(Error::layer(name, format!("Add needs at least 2 inputs, has {}", inputs.len())));
                }
                if let Some(s) = in_shapes.iter().find(|s| **s != in_shapes[0]) {
                    return Err(Error::layer(name, format!("adds tensors of shapes {:?} and {s:?}", in_shapes[0])));
                }
                (Op::Add { activation: Activation::Linear }, in_shapes[0].clone())
            }
            "AveragePooling2D" | "MaxPooling2D" => {
                expect_inputs(1)?;
                let [h, w, c] = feature_map(&in_shapes[0])?;
                check_channels_last(name, cfg)?;
                let kernel = pair(cfg, "pool_size", name)?.unwrap_or([2, 2]);
                let strides = pair(cfg, "strides", name)?.unwrap_or(kernel);
                let mode = padding_mode(cfg, name)?;
                let (window, [oh, ow]) = Window::resolve([h, w], kernel, strides, mode).ok_or_else(|| {
                    Error::layer(
                        name,
                        format!("a {kernel:?} pool with strides {strides:?} does not fit a {h}x{w} input"),
                    )
                })?;
                let op = if spec.class == "MaxPooling2D" { Op::MaxPool(window) } else { Op::AvgPool(window) };
                (op, vec![oh, ow, c])
            }
            "GlobalAveragePooling2D" => {
                expect_inputs(1)?;
                let [_, _, c] = feature_map(&in_shapes[0])?;
                check_channels_last(name, cfg)?;
                // keepdims only changes the shape's bookkeeping, not the data.
                let shape = if cfg["keepdims"].as_bool().unwrap_or(false) { vec![1, 1, c] } else { vec![c] };
                (Op::GlobalAvgPool, shape)
            }
            "Flatten" => {
                expect_inputs(1)?;
                check_channels_last(name, cfg)?;
                (Op::Flatten, vec![in_shapes[0].iter().product()])
            }
            other => {
                return Err(Error::UnsupportedLayer {
                    layer: name.into(),
                    class: other.into(),
                    supported: SUPPORTED_LAYERS,
                })
            }
        };
        let id = self.push(name.to_string(), name, op, inputs, shape);
        self.output_of.insert(name.to_string(), id);
        Ok(id)
    }

    /// Pushes a Conv2D/Dense node. A softmax inside the layer becomes its own
    /// node, so the logits (`<layer>:preact`) stay visible to engines and
    /// diffs; other activations stay in the layer's node.
    fn with_activation(
        &mut self,
        name: &str,
        mut op: Op,
        inputs: Vec<NodeId>,
        shape: Vec<usize>,
        activation: Activation,
    ) -> NodeId {
        let id = if activation == Activation::Softmax {
            match &mut op {
                Op::Conv2d { activation, .. } | Op::Dense { activation, .. } => *activation = Activation::Linear,
                _ => unreachable!("only Conv2D and Dense carry activations"),
            }
            let pre = self.push(format!("{name}:preact"), name, op, inputs, shape.clone());
            self.push(name.to_string(), name, Op::Activation(Activation::Softmax), vec![pre], shape)
        } else {
            self.push(name.to_string(), name, op, inputs, shape)
        };
        self.output_of.insert(name.to_string(), id);
        id
    }
}

fn usize_field(cfg: &Value, key: &str, layer: &str) -> Result<usize> {
    cfg[key]
        .as_u64()
        .filter(|&v| v > 0)
        .map(|v| v as usize)
        .ok_or_else(|| Error::layer(layer, format!("'{key}' must be a positive integer, found {}", cfg[key])))
}

/// A `(int, int)` field, also accepting a single int; `None` when absent.
fn pair(cfg: &Value, key: &str, layer: &str) -> Result<Option<[usize; 2]>> {
    let bad = || Error::layer(layer, format!("'{key}' must be one or two positive integers, found {}", cfg[key]));
    match &cfg[key] {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let v = n.as_u64().filter(|&v| v > 0).ok_or_else(bad)? as usize;
            Ok(Some([v, v]))
        }
        Value::Array(a) if a.len() == 2 => {
            let a0 = a[0].as_u64().filter(|&v| v > 0).ok_or_else(bad)? as usize;
            let a1 = a[1].as_u64().filter(|&v| v > 0).ok_or_else(bad)? as usize;
            Ok(Some([a0, a1]))
        }
        _ => Err(bad()),
    }
}

fn padding_mode(cfg: &Value, layer: &str) -> Result<PaddingMode> {
    match cfg["padding"].as_str().unwrap_or("valid") {
        "same" => Ok(PaddingMode::Same),
        "valid" => Ok(PaddingMode::Valid),
        other => Err(Error::layer(layer, format!("padding '{other}' is not supported (same, valid)"))),
    }
}

fn activation_field(cfg: &Value, layer: &str) -> Result<Activation> {
    let name = cfg["activation"].as_str().unwrap_or("linear");
    Activation::parse(name)
        .ok_or_else(|| Error::layer(layer, format!("activation '{name}' is not supported (linear, relu, softmax)")))
}

fn check_channels_last(layer: &str, cfg: &Value) -> Result<()> {
    match cfg["data_format"].as_str() {
        None | Some("channels_last") => Ok(()),
        Some(f) => Err(Error::layer(layer, format!("data_format '{f}' is not supported (channels_last only)"))),
    }
}
