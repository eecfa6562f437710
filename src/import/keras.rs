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
/// converted `.safetensors`), by Keras short name (`kernel`, `bias`, `gamma`,
/// `beta`, `moving_mean`, `moving_variance`), in Keras layout. Shapes come
/// first, so a file declaring a huge weight is refused before it is read.
pub trait WeightSource {
    /// Every weight the file holds for `layer`, with its declared shape; reads no data.
    fn weight_shapes(&self, layer: &str) -> Result<BTreeMap<String, Vec<usize>>>;
    /// One weight's values (called only after its shape was checked).
    fn read_weight(&self, layer: &str, name: &str) -> Result<Tensor>;
}

/// The largest size of any dimension in a config (input sides, channels,
/// filters, units, kernel and pool sizes, strides).
pub const MAX_DIM: u64 = 1 << 16;
/// The largest number of values one layer's output may hold per image.
pub const MAX_VALUES_PER_IMAGE: u64 = 1 << 26;
/// The most weight values a model may hold in all (1 GiB of f32; ResNet8 has 78,666).
pub const MAX_WEIGHT_VALUES: u64 = 1 << 28;

/// Refuses an output shape beyond [`MAX_VALUES_PER_IMAGE`] (checked arithmetic).
fn check_output_size(layer: &str, shape: &[usize]) -> Result<()> {
    let values = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
    match values {
        Some(v) if v <= MAX_VALUES_PER_IMAGE => Ok(()),
        _ => Err(Error::layer(
            layer,
            format!("its output {shape:?} holds more than {MAX_VALUES_PER_IMAGE} values per image"),
        )),
    }
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

    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, spec) in specs.iter().enumerate() {
        if by_name.insert(spec.name.as_str(), i).is_some() {
            return Err(Error::layer(&spec.name, "is the name of two layers; layer names must be unique"));
        }
    }
    let order = topological_order(&specs, &by_name, &outputs[0])?;

    let mut builder = Builder { nodes: Vec::new(), output_of: HashMap::new(), weight_values: std::cell::Cell::new(0) };
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
    /// Weight values taken so far, bounded by [`MAX_WEIGHT_VALUES`].
    weight_values: std::cell::Cell<u64>,
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
        // Shapes are checked against the config before any value is read;
        // then every value must be finite.
        let take = |expected: &[(&str, Vec<usize>)]| -> Result<BTreeMap<String, Tensor>> {
            let weight_err =
                |weight: &str, detail: String| Error::Weight { layer: name.into(), weight: weight.into(), detail };
            let mut declared = weights.weight_shapes(name)?;
            for (wname, shape) in expected {
                let got =
                    declared.remove(*wname).ok_or_else(|| weight_err(wname, "is missing from the weights".into()))?;
                if &got != shape {
                    return Err(weight_err(wname, format!("has shape {got:?}, but the layer needs {shape:?}")));
                }
            }
            if let Some(extra) = declared.keys().next() {
                return Err(weight_err(extra, "is not a weight this layer's config uses".into()));
            }
            for (wname, shape) in expected {
                let values = shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
                let total = values.and_then(|v| v.checked_add(self.weight_values.get()));
                match total {
                    Some(t) if t <= MAX_WEIGHT_VALUES => self.weight_values.set(t),
                    _ => {
                        return Err(weight_err(
                            wname,
                            format!("of shape {shape:?} takes the model over {MAX_WEIGHT_VALUES} weight values"),
                        ))
                    }
                }
            }
            let mut out = BTreeMap::new();
            for (wname, shape) in expected {
                let t = weights.read_weight(name, wname)?;
                if &t.shape != shape {
                    return Err(weight_err(wname, format!("has shape {:?}, but the layer needs {shape:?}", t.shape)));
                }
                if let Some(i) = t.data.iter().position(|v| !v.is_finite()) {
                    return Err(weight_err(wname, format!("holds a non-finite value ({}) at index {i}", t.data[i])));
                }
                out.insert(wname.to_string(), t);
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
                    .map(|d| d.as_u64().filter(|&d| d > 0 && d <= MAX_DIM).map(|d| d as usize))
                    .collect::<Option<_>>()
                    .ok_or_else(|| {
                        Error::layer(name, format!("input shape {dims:?} must be fully known, each side 1..={MAX_DIM}"))
                    })?;
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
                match cfg.get("groups") {
                    None => {}
                    Some(v) if v.as_u64() == Some(1) => {}
                    Some(v) if v.as_u64().is_some() => {
                        return Err(Error::layer(name, format!("grouped convolution (groups {v}) is not supported")))
                    }
                    Some(v) => return Err(Error::layer(name, format!("'groups' must be an integer, found {v}"))),
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
                let use_bias = bool_field(cfg, "use_bias", true, name)?;
                let activation = activation_field(cfg, name)?;
                let mut expected = vec![("kernel", vec![kernel[0], kernel[1], cin, filters])];
                if use_bias {
                    expected.push(("bias", vec![filters]));
                }
                let mut w = take(&expected)?;
                let op = Op::Conv2d {
                    window,
                    weight: w.remove("kernel").unwrap(),
                    bias: w.remove("bias"),
                    activation,
                    residual: false,
                    shortcut: None,
                };
                check_output_size(name, &[oh, ow, filters])?;
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
                let use_bias = bool_field(cfg, "use_bias", true, name)?;
                let activation = activation_field(cfg, name)?;
                let mut expected = vec![("kernel", vec![n_in, units])];
                if use_bias {
                    expected.push(("bias", vec![units]));
                }
                let mut w = take(&expected)?;
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
                let epsilon =
                    cfg["epsilon"].as_f64().map(|e| e as f32).filter(|e| e.is_finite() && *e > 0.0).ok_or_else(
                        || Error::layer(name, format!("'epsilon' must be a positive number, found {}", cfg["epsilon"])),
                    )?;
                let center = bool_field(cfg, "center", true, name)?;
                let scale = bool_field(cfg, "scale", true, name)?;
                let mut expected = vec![("moving_mean", vec![channels]), ("moving_variance", vec![channels])];
                if scale {
                    expected.push(("gamma", vec![channels]));
                }
                if center {
                    expected.push(("beta", vec![channels]));
                }
                let mut w = take(&expected)?;
                if let Some((c, v)) = w["moving_variance"].data.iter().enumerate().find(|(_, v)| **v < 0.0) {
                    return Err(Error::Weight {
                        layer: name.into(),
                        weight: "moving_variance".into(),
                        detail: format!("is negative ({v}) for channel {c}; a variance is at least 0"),
                    });
                }
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
                let shape = if bool_field(cfg, "keepdims", false, name)? { vec![1, 1, c] } else { vec![c] };
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
        check_output_size(name, &shape)?;
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
        .filter(|&v| v > 0 && v <= MAX_DIM)
        .map(|v| v as usize)
        .ok_or_else(|| Error::layer(layer, format!("'{key}' must be an integer in 1..={MAX_DIM}, found {}", cfg[key])))
}

/// A boolean field; `default` when absent, an error when of another type.
fn bool_field(cfg: &Value, key: &str, default: bool, layer: &str) -> Result<bool> {
    match cfg.get(key) {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(Error::layer(layer, format!("'{key}' must be true or false, found {other}"))),
    }
}

/// A `(int, int)` field, also accepting a single int; `None` when absent.
fn pair(cfg: &Value, key: &str, layer: &str) -> Result<Option<[usize; 2]>> {
    let bad =
        || Error::layer(layer, format!("'{key}' must be one or two integers in 1..={MAX_DIM}, found {}", cfg[key]));
    let dim = |v: &Value| v.as_u64().filter(|&v| v > 0 && v <= MAX_DIM).map(|v| v as usize).ok_or_else(bad);
    match cfg.get(key) {
        None => Ok(None),
        Some(n @ Value::Number(_)) => {
            let v = dim(n)?;
            Ok(Some([v, v]))
        }
        Some(Value::Array(a)) if a.len() == 2 => Ok(Some([dim(&a[0])?, dim(&a[1])?])),
        _ => Err(bad()),
    }
}

/// `padding`: Keras's default `valid` when absent; anything but "same" or "valid" is refused.
fn padding_mode(cfg: &Value, layer: &str) -> Result<PaddingMode> {
    match cfg.get("padding") {
        None => Ok(PaddingMode::Valid),
        Some(Value::String(p)) if p == "same" => Ok(PaddingMode::Same),
        Some(Value::String(p)) if p == "valid" => Ok(PaddingMode::Valid),
        Some(other) => Err(Error::layer(layer, format!("padding {other} is not supported (\"same\", \"valid\")"))),
    }
}

/// `activation` must be named: Keras always writes it, so a missing, numeric
/// or object value is a broken config, not "linear".
fn activation_field(cfg: &Value, layer: &str) -> Result<Activation> {
    match cfg.get("activation") {
        Some(Value::String(name)) => Activation::parse(name).ok_or_else(|| {
            Error::layer(layer, format!("activation '{name}' is not supported (linear, relu, softmax)"))
        }),
        Some(other) => {
            Err(Error::layer(layer, format!("'activation' must be a name (linear, relu, softmax), found {other}")))
        }
        None => Err(Error::layer(layer, "has no 'activation' in its config")),
    }
}

fn check_channels_last(layer: &str, cfg: &Value) -> Result<()> {
    match cfg.get("data_format") {
        None => Ok(()),
        Some(Value::String(f)) if f == "channels_last" => Ok(()),
        Some(f) => Err(Error::layer(layer, format!("data_format {f} is not supported (channels_last only)"))),
    }
}
