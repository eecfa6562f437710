//! Builds Keras functional configs with random weights and writes them in
//! the Keras `.h5` layout (`model_config` attribute, `model_weights/<layer>/
//! <layer>/<name>:0` datasets, `layer_names`/`weight_names` attributes).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;

use hdf5::types::{FixedAscii, VarLenAscii, VarLenUnicode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// How the name lists are stored: Keras 2.4 (fixed-length) or tf_keras (variable-length).
#[derive(Clone, Copy, Debug)]
pub enum NameStrings {
    Fixed,
    VarLen,
}

pub struct Weight {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

pub struct ModelBuilder {
    pub layers: Vec<Value>,
    pub weights: Vec<(String, Vec<Weight>)>,
    shapes: HashMap<String, Vec<usize>>,
    counters: HashMap<&'static str, usize>,
    pub rng: StdRng,
    input: Option<String>,
}

impl ModelBuilder {
    pub fn new(seed: u64) -> Self {
        ModelBuilder {
            layers: Vec::new(),
            weights: Vec::new(),
            shapes: HashMap::new(),
            counters: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
            input: None,
        }
    }

    fn name(&mut self, base: &'static str) -> String {
        let n = self.counters.entry(base).or_insert(0);
        let name = if *n == 0 { base.to_string() } else { format!("{base}_{n}") };
        *n += 1;
        name
    }

    pub fn shape(&self, layer: &str) -> Vec<usize> {
        self.shapes[layer].clone()
    }

    /// Adds a layer given its class, config and inputs; returns its name.
    pub fn layer(
        &mut self,
        class: &str,
        base: &'static str,
        mut config: Value,
        inputs: &[&str],
        shape: Vec<usize>,
    ) -> String {
        let name = self.name(base);
        config["name"] = json!(name);
        let inbound: Vec<Value> = inputs.iter().map(|i| json!([i, 0, 0, {}])).collect();
        let nodes = if inputs.is_empty() { json!([]) } else { json!([inbound]) };
        self.layers.push(json!({"class_name": class, "config": config, "name": name, "inbound_nodes": nodes}));
        self.shapes.insert(name.clone(), shape);
        name
    }

    fn random(&mut self, n: usize, scale: f32, offset: f32) -> Vec<f32> {
        (0..n).map(|_| offset + scale * self.rng.random_range(-1.0f32..1.0)).collect()
    }

    fn add_weights(&mut self, layer: &str, weights: Vec<(&str, Vec<usize>, Vec<f32>)>) {
        let ws = weights
            .into_iter()
            .map(|(n, shape, data)| Weight { name: format!("{layer}/{n}:0"), shape, data })
            .collect();
        self.weights.push((layer.to_string(), ws));
    }

    pub fn input(&mut self, shape: [usize; 3]) -> String {
        let cfg = json!({"batch_input_shape": [null, shape[0], shape[1], shape[2]], "dtype": "float32"});
        let name = self.layer("InputLayer", "input", cfg, &[], shape.to_vec());
        self.input = Some(name.clone());
        name
    }

    pub fn conv(
        &mut self,
        x: &str,
        filters: usize,
        kernel: usize,
        stride: usize,
        padding: &str,
        activation: &str,
    ) -> String {
        let [h, w, cin] = self.shape(x)[..] else { panic!("conv on a vector") };
        let out = |n: usize| if padding == "same" { n.div_ceil(stride) } else { (n - kernel) / stride + 1 };
        let cfg = json!({"filters": filters, "kernel_size": [kernel, kernel], "strides": [stride, stride],
            "padding": padding, "data_format": "channels_last", "dilation_rate": [1, 1], "groups": 1,
            "activation": activation, "use_bias": true});
        let name = self.layer("Conv2D", "conv2d", cfg, &[x], vec![out(h), out(w), filters]);
        // He-like scale; inputs are 0..255, so keep activations bounded.
        let fan_in = (kernel * kernel * cin) as f32;
        let k = self.random(kernel * kernel * cin * filters, (2.0 / fan_in).sqrt(), 0.0);
        let b = self.random(filters, 0.5, 0.0);
        self.add_weights(&name, vec![("kernel", vec![kernel, kernel, cin, filters], k), ("bias", vec![filters], b)]);
        name
    }

    /// BatchNorm with non-trivial statistics (mean ≠ 0, variance ≠ 1, gamma ≠ 1).
    pub fn batch_norm(&mut self, x: &str) -> String {
        let shape = self.shape(x);
        let c = *shape.last().unwrap();
        let cfg = json!({"axis": [shape.len()], "momentum": 0.99, "epsilon": 0.001, "center": true, "scale": true});
        let name = self.layer("BatchNormalization", "batch_normalization", cfg, &[x], shape);
        let gamma = self.random(c, 0.5, 1.0);
        let beta = self.random(c, 0.5, 0.0);
        let mean = self.random(c, 3.0, 0.0);
        let var: Vec<f32> = self.random(c, 0.9, 1.0).into_iter().map(|v| v.abs() + 1e-3).collect();
        self.add_weights(
            &name,
            vec![
                ("gamma", vec![c], gamma),
                ("beta", vec![c], beta),
                ("moving_mean", vec![c], mean),
                ("moving_variance", vec![c], var),
            ],
        );
        name
    }

    pub fn activation(&mut self, x: &str, activation: &str) -> String {
        let shape = self.shape(x);
        self.layer("Activation", "activation", json!({"activation": activation}), &[x], shape)
    }

    pub fn add(&mut self, a: &str, b: &str) -> String {
        let shape = self.shape(a);
        self.layer("Add", "add", json!({}), &[a, b], shape)
    }

    pub fn pool(&mut self, class: &str, x: &str, size: usize, stride: usize, padding: &str) -> String {
        let [h, w, c] = self.shape(x)[..] else { panic!("pool on a vector") };
        let out = |n: usize| if padding == "same" { n.div_ceil(stride) } else { (n - size) / stride + 1 };
        let cfg = json!({"pool_size": [size, size], "strides": [stride, stride], "padding": padding, "data_format": "channels_last"});
        let base = if class == "MaxPooling2D" { "max_pooling2d" } else { "average_pooling2d" };
        self.layer(class, base, cfg, &[x], vec![out(h), out(w), c])
    }

    pub fn global_avg_pool(&mut self, x: &str) -> String {
        let c = *self.shape(x).last().unwrap();
        self.layer(
            "GlobalAveragePooling2D",
            "global_average_pooling2d",
            json!({"data_format": "channels_last"}),
            &[x],
            vec![c],
        )
    }

    pub fn flatten(&mut self, x: &str) -> String {
        let n = self.shape(x).iter().product();
        self.layer("Flatten", "flatten", json!({"data_format": "channels_last"}), &[x], vec![n])
    }

    pub fn dense(&mut self, x: &str, units: usize, activation: &str) -> String {
        let n_in = self.shape(x)[0];
        let cfg = json!({"units": units, "activation": activation, "use_bias": true});
        let name = self.layer("Dense", "dense", cfg, &[x], vec![units]);
        let k = self.random(n_in * units, (2.0 / n_in as f32).sqrt(), 0.0);
        let b = self.random(units, 0.1, 0.0);
        self.add_weights(&name, vec![("kernel", vec![n_in, units], k), ("bias", vec![units], b)]);
        name
    }

    /// The functional `model_config` JSON with `output` as the model output.
    pub fn config(&self, output: &str) -> String {
        let input = self.input.as_deref().expect("an input layer");
        json!({"class_name": "Functional", "config": {"name": "model", "layers": self.layers,
            "input_layers": [[input, 0, 0]], "output_layers": [[output, 0, 0]]}})
        .to_string()
    }

    /// Writes the model as a Keras `.h5`.
    pub fn write_h5(&self, path: &Path, output: &str, names: NameStrings) {
        write_h5(path, &self.config(output), &self.weights, &self.layers, names)
    }
}

/// A MLPerf-Tiny-style ResNet8 with `width` filters in the first stack.
pub fn resnet8_model(b: &mut ModelBuilder, width: usize) -> String {
    let inp = b.input([32, 32, 3]);
    let x = b.conv(&inp, width, 3, 1, "same", "linear");
    let x = b.batch_norm(&x);
    let mut x = b.activation(&x, "relu");
    for (stack, filters) in [width, 2 * width, 4 * width].into_iter().enumerate() {
        let stride = if stack == 0 { 1 } else { 2 };
        let y = b.conv(&x, filters, 3, stride, "same", "linear");
        let y = b.batch_norm(&y);
        let y = b.activation(&y, "relu");
        let y = b.conv(&y, filters, 3, 1, "same", "linear");
        let y = b.batch_norm(&y);
        let shortcut = if stack == 0 { x.clone() } else { b.conv(&x, filters, 1, 2, "same", "linear") };
        let s = b.add(&shortcut, &y);
        x = b.activation(&s, "relu");
    }
    let x = b.pool("AveragePooling2D", &x, 8, 8, "valid");
    let x = b.flatten(&x);
    b.dense(&x, 10, "softmax")
}

fn strings_attr(loc: &hdf5::Location, name: &str, values: &[String], style: NameStrings) {
    match style {
        NameStrings::Fixed => {
            let v: Vec<FixedAscii<64>> = values.iter().map(|s| FixedAscii::from_ascii(s.as_bytes()).unwrap()).collect();
            loc.new_attr::<FixedAscii<64>>().shape([v.len()]).create(name).unwrap().write_raw(&v).unwrap();
        }
        NameStrings::VarLen => {
            let v: Vec<VarLenUnicode> = values.iter().map(|s| VarLenUnicode::from_str(s).unwrap()).collect();
            loc.new_attr::<VarLenUnicode>().shape([v.len()]).create(name).unwrap().write_raw(&v).unwrap();
        }
    }
}

/// Writes `model_config` and weights in the Keras `.h5` layout.
pub fn write_h5(path: &Path, config: &str, weights: &[(String, Vec<Weight>)], layers: &[Value], names: NameStrings) {
    let _guard = super::fork_lock();
    let file = hdf5::File::create(path).unwrap();
    let cfg = VarLenAscii::from_ascii(config.as_bytes()).unwrap();
    file.new_attr::<VarLenAscii>().shape(()).create("model_config").unwrap().write_scalar(&cfg).unwrap();
    let version = VarLenUnicode::from_str("2.4.0").unwrap();
    file.new_attr::<VarLenUnicode>().shape(()).create("keras_version").unwrap().write_scalar(&version).unwrap();
    let mw = file.create_group("model_weights").unwrap();
    let layer_names: Vec<String> = layers.iter().map(|l| l["name"].as_str().unwrap().to_string()).collect();
    strings_attr(&mw, "layer_names", &layer_names, names);
    if matches!(names, NameStrings::VarLen) {
        // tf_keras adds this empty group.
        mw.create_group("top_level_model_weights").unwrap();
    }
    for layer in &layer_names {
        if mw.link_exists(layer) {
            continue; // a config naming two layers alike (the importer must refuse it)
        }
        let g = mw.create_group(layer).unwrap();
        let ws: &[Weight] = weights.iter().find(|(l, _)| l == layer).map(|(_, w)| w.as_slice()).unwrap_or(&[]);
        let wnames: Vec<String> = ws.iter().map(|w| w.name.clone()).collect();
        strings_attr(&g, "weight_names", &wnames, names);
        for w in ws {
            let (dir, leaf) = w.name.rsplit_once('/').unwrap();
            let sub = if g.link_exists(dir) { g.group(dir).unwrap() } else { g.create_group(dir).unwrap() };
            let ds = sub.new_dataset::<f32>().shape(w.shape.clone()).create(leaf).unwrap();
            // No data: a declared but never-written dataset (it costs no space in the file).
            if !w.data.is_empty() {
                ds.write_raw(&w.data).unwrap();
            }
        }
    }
}
