//! int8 graphs: quantization parameters, the int8 ops, and the CPU reference
//! for them with TFLite's reference-kernel integer semantics (what TFLite
//! Micro runs): int32 accumulation, fixed-point requantization with
//! `SaturatingRoundingDoublingHighMul` and `RoundingDivideByPOT`, the int8 Add
//! with its 20-bit left shift, the integer average pool, and the fixed-point
//! softmax. This engine is the oracle the GPU's int8 kernels must equal.
//!
//! int8 values travel through the engines as f32 holding the exact integer
//! (every int8 and every intermediate written out is exact in f32).

use serde::{Deserialize, Serialize};

use crate::graph::Window;

/// Affine quantization of a tensor: `real = scale × (q − zero_point)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: i32,
}

impl QParams {
    /// `q` of a real value, as TFLite quantizes (round half away from zero), clamped to int8.
    pub fn quantize(&self, real: f32) -> i32 {
        ((real / self.scale).round() as i32 + self.zero_point).clamp(-128, 127)
    }

    pub fn dequantize(&self, q: f32) -> f32 {
        self.scale * (q - self.zero_point as f32)
    }

    /// The int8 output range of an activation: ReLU clamps at the real 0.
    pub fn activation_range(&self, relu: bool) -> (i32, i32) {
        if relu {
            ((self.zero_point + (0.0f32 / self.scale).round() as i32).max(-128), 127)
        } else {
            (-128, 127)
        }
    }
}

/// A real multiplier as TFLite stores it: `multiplier × 2^(shift − 31)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Requant {
    pub multiplier: i32,
    pub shift: i32,
}

impl Requant {
    /// TFLite's `QuantizeMultiplier`: the significand rounded to 31 bits.
    pub fn new(real: f64) -> Self {
        if real == 0.0 {
            return Requant { multiplier: 0, shift: 0 };
        }
        let (q, mut shift) = frexp(real);
        let mut fixed = (q * (1u64 << 31) as f64).round() as i64;
        if fixed == 1i64 << 31 {
            fixed /= 2;
            shift += 1;
        }
        if shift < -31 {
            return Requant { multiplier: 0, shift: 0 };
        }
        Requant { multiplier: fixed as i32, shift }
    }

    /// TFLite's `MultiplyByQuantizedMultiplier`.
    pub fn apply(&self, x: i32) -> i32 {
        let left = self.shift.max(0);
        let right = (-self.shift).max(0);
        rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left), self.multiplier), right)
    }
}

impl Requant {
    /// The single-rounding form of the multiply: `(x × multiplier + half) >>
    /// (31 − shift)` in 64 bits, rounding once (half up) instead of twice.
    /// LiteRT's reference fully connected kernel requantizes this way (the
    /// conv the two-rounding [`Requant::apply`]): measured on the MLPerf
    /// model, the two-rounding form misses 42 of its 10,170 outputs, a
    /// 16-bit-multiplier variant 2, this one none.
    pub fn apply_single_rounding(&self, x: i64) -> i32 {
        let total_shift = 31 - self.shift as i64;
        let round = 1i64 << (total_shift - 1);
        ((x * self.multiplier as i64 + round) >> total_shift).clamp(i32::MIN as i64, i32::MAX as i64) as i32
    }
}

/// `x = q × 2^e` with `q` in [0.5, 1).
fn frexp(x: f64) -> (f64, i32) {
    if x == 0.0 || !x.is_finite() {
        return (x, 0);
    }
    let bits = x.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        // Subnormal: scale up first.
        let (q, e) = frexp(x * (1u64 << 54) as f64);
        return (q, e - 54);
    }
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (q, exp - 1022)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`: the high 32 bits of 2ab, rounded.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge: i64 = if ab >= 0 { 1 << 30 } else { 1 - (1 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent`, rounded half away from zero.
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// gemmlowp's `SaturatingRoundingMultiplyByPOT` for a positive exponent.
fn saturating_shift_left(x: i32, exponent: i32) -> i32 {
    let threshold = (1i32 << (31 - exponent)) - 1;
    if x > threshold {
        i32::MAX
    } else if x < -threshold {
        i32::MIN
    } else {
        x << exponent
    }
}

/// The int8 ops. Each carries its output's quantization.
#[derive(Clone, Debug)]
pub enum QOp {
    /// f32 → int8 (the model's input).
    Quantize { output: QParams },
    /// int8 → f32 (the output of this op is not int8).
    Dequantize { input: QParams },
    /// Per-output-channel symmetric weights `(kh, kw, cin, cout)`, int32 bias.
    Conv2d {
        window: Window,
        weight: Vec<i8>,
        weight_shape: [usize; 4],
        weight_scales: Vec<f32>,
        bias: Vec<i32>,
        input: QParams,
        output: QParams,
        requant: Vec<Requant>,
        range: (i32, i32),
    },
    /// TFLite's int8 Add: both inputs shifted left by 20 bits, rescaled, summed, rescaled.
    Add {
        inputs: [QParams; 2],
        output: QParams,
        input_requant: [Requant; 2],
        output_requant: Requant,
        range: (i32, i32),
    },
    /// Integer average (the output keeps the input's quantization).
    AvgPool { window: Window, output: QParams, range: (i32, i32) },
    /// Weight `(out, in)`, per-tensor symmetric.
    Dense {
        weight: Vec<i8>,
        weight_shape: [usize; 2],
        weight_scale: f32,
        bias: Vec<i32>,
        input: QParams,
        output: QParams,
        requant: Requant,
        range: (i32, i32),
    },
    /// TFLite's fixed-point softmax (int8 in and out).
    Softmax { input: QParams, output: QParams, beta: f32, input_multiplier: i32, input_left_shift: i32, diff_min: i32 },
}

impl QOp {
    /// The output's quantization (`None` for [`QOp::Dequantize`], whose output is f32).
    pub fn output(&self) -> Option<QParams> {
        match self {
            QOp::Quantize { output }
            | QOp::Conv2d { output, .. }
            | QOp::Add { output, .. }
            | QOp::AvgPool { output, .. }
            | QOp::Dense { output, .. }
            | QOp::Softmax { output, .. } => Some(*output),
            QOp::Dequantize { .. } => None,
        }
    }

    pub fn kind(&self) -> String {
        match self {
            QOp::Quantize { .. } => "Quantize".into(),
            QOp::Dequantize { .. } => "Dequantize".into(),
            QOp::Conv2d { window, range, output, .. } => {
                let relu = if range.0 > -128 || (range.0 == output.zero_point) { "+relu" } else { "" };
                format!("QConv{}x{}/s{}{relu}", window.kernel[0], window.kernel[1], window.strides[0])
            }
            QOp::Add { .. } => "QAdd".into(),
            QOp::AvgPool { window, .. } => format!("QAvgPool{}x{}", window.kernel[0], window.kernel[1]),
            QOp::Dense { .. } => "QDense".into(),
            QOp::Softmax { .. } => "QSoftmax".into(),
        }
    }

    /// Weight values (int8) and bias values (int32).
    pub fn params(&self) -> usize {
        match self {
            QOp::Conv2d { weight, bias, .. } | QOp::Dense { weight, bias, .. } => weight.len() + bias.len(),
            _ => 0,
        }
    }

    /// An int8 conv with its per-channel requantization, as TFLite prepares
    /// it: `input_scale × weight_scale / output_scale` in double.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(
        window: Window,
        weight: Vec<i8>,
        weight_shape: [usize; 4],
        weight_scales: Vec<f32>,
        bias: Vec<i32>,
        input: QParams,
        output: QParams,
        range: (i32, i32),
    ) -> QOp {
        let requant =
            weight_scales.iter().map(|&s| Requant::new(input.scale as f64 * s as f64 / output.scale as f64)).collect();
        QOp::Conv2d { window, weight, weight_shape, weight_scales, bias, input, output, requant, range }
    }

    /// TFLite's int8 Add, prepared as its `Prepare` does (float products where it multiplies floats).
    pub fn add(inputs: [QParams; 2], output: QParams, range: (i32, i32)) -> QOp {
        let twice_max = 2.0f32 * inputs[0].scale.max(inputs[1].scale);
        let input_requant = inputs.map(|p| Requant::new(p.scale as f64 / twice_max as f64));
        let output_requant = Requant::new(twice_max as f64 / ((1 << 20) as f32 * output.scale) as f64);
        QOp::Add { inputs, output, input_requant, output_requant, range }
    }

    /// An int8 fully connected layer, weight `(out, in)`, one weight scale.
    pub fn dense(
        weight: Vec<i8>,
        weight_shape: [usize; 2],
        weight_scale: f32,
        bias: Vec<i32>,
        input: QParams,
        output: QParams,
        range: (i32, i32),
    ) -> QOp {
        // TFLite's GetQuantizedConvolutionMultipler multiplies the two scales in float here.
        let requant = Requant::new((input.scale * weight_scale) as f64 / output.scale as f64);
        QOp::Dense { weight, weight_shape, weight_scale, bias, input, output, requant, range }
    }

    /// The softmax's fixed-point parameters, as TFLite prepares them
    /// (`PreprocessSoftmaxScaling`, `CalculateInputRadius`, 5 integer bits).
    pub fn softmax(input: QParams, output: QParams, beta: f32) -> QOp {
        const SCALED_DIFF_INTEGER_BITS: i32 = 5;
        let real = (beta as f64 * input.scale as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64)
            .min((1i64 << 31) as f64 - 1.0);
        let r = Requant::new(real);
        let radius = ((1i64 << SCALED_DIFF_INTEGER_BITS) - 1) as f64 * (1i64 << (31 - SCALED_DIFF_INTEGER_BITS)) as f64
            / (1i64 << r.shift) as f64;
        QOp::Softmax {
            input,
            output,
            beta,
            input_multiplier: r.multiplier,
            input_left_shift: r.shift,
            diff_min: -(radius.floor() as i32),
        }
    }
}

/// Runs one int8 op on a batch: `inputs` are its input values (integers in
/// f32), `in_shapes` their per-image shapes; returns `batch × out_size` values.
pub fn run(op: &QOp, inputs: &[&[f32]], in_shapes: &[&[usize]], out_shape: &[usize], batch: usize) -> Vec<f32> {
    let out_size: usize = out_shape.iter().product();
    let mut out = vec![0.0f32; batch * out_size];
    for b in 0..batch {
        let image = |k: usize| {
            let n: usize = in_shapes[k].iter().product();
            &inputs[k][b * n..(b + 1) * n]
        };
        let y = &mut out[b * out_size..(b + 1) * out_size];
        match op {
            QOp::Quantize { output } => {
                for (o, &x) in y.iter_mut().zip(image(0)) {
                    *o = output.quantize(x) as f32;
                }
            }
            QOp::Dequantize { input } => {
                for (o, &q) in y.iter_mut().zip(image(0)) {
                    *o = input.dequantize(q);
                }
            }
            QOp::Conv2d { window, weight, weight_shape, bias, input, output, requant, range, .. } => conv(
                image(0),
                in_shapes[0],
                y,
                out_shape,
                window,
                weight,
                *weight_shape,
                bias,
                input,
                output,
                requant,
                *range,
            ),
            QOp::Add { inputs: params, output, input_requant, output_requant, range } => {
                for ((o, &a), &c) in y.iter_mut().zip(image(0)).zip(image(1)) {
                    let scaled =
                        |q: f32, p: &QParams, r: &Requant| r.apply((q as i32 - p.zero_point).wrapping_mul(1 << 20));
                    let sum = scaled(a, &params[0], &input_requant[0]) + scaled(c, &params[1], &input_requant[1]);
                    *o = (output_requant.apply(sum) + output.zero_point).clamp(range.0, range.1) as f32;
                }
            }
            QOp::AvgPool { window, range, .. } => avg_pool(image(0), in_shapes[0], y, out_shape, window, *range),
            QOp::Dense { weight, weight_shape: [n_out, n_in], bias, input, output, requant, range, .. } => {
                let x = image(0);
                for (j, o) in y.iter_mut().enumerate().take(*n_out) {
                    let mut acc = 0i64;
                    for i in 0..*n_in {
                        acc += weight[j * n_in + i] as i64 * (x[i] as i64 - input.zero_point as i64);
                    }
                    acc += bias.get(j).copied().unwrap_or(0) as i64;
                    *o = (requant.apply_single_rounding(acc) + output.zero_point).clamp(range.0, range.1) as f32;
                }
            }
            QOp::Softmax { input_multiplier, input_left_shift, diff_min, .. } => {
                softmax(image(0), y, *input_multiplier, *input_left_shift, *diff_min)
            }
        }
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn conv(
    x: &[f32],
    in_shape: &[usize],
    y: &mut [f32],
    out_shape: &[usize],
    window: &Window,
    weight: &[i8],
    [kh, kw, cin, cout]: [usize; 4],
    bias: &[i32],
    input: &QParams,
    output: &QParams,
    requant: &[Requant],
    range: (i32, i32),
) {
    let (ih, iw) = (in_shape[0] as isize, in_shape[1] as isize);
    let (oh, ow) = (out_shape[0], out_shape[1]);
    let [sh, sw] = window.strides;
    for oy in 0..oh {
        for ox in 0..ow {
            for oc in 0..cout {
                let mut acc = 0i32;
                for ky in 0..kh {
                    let iy = (oy * sh + ky) as isize - window.pads.top as isize;
                    if iy < 0 || iy >= ih {
                        continue; // taps outside the image are skipped (TFLite)
                    }
                    for kx in 0..kw {
                        let ix = (ox * sw + kx) as isize - window.pads.left as isize;
                        if ix < 0 || ix >= iw {
                            continue;
                        }
                        let px = ((iy * iw + ix) as usize) * cin;
                        let wk = ((ky * kw + kx) * cin) * cout + oc;
                        for ic in 0..cin {
                            acc += weight[wk + ic * cout] as i32 * (x[px + ic] as i32 - input.zero_point);
                        }
                    }
                }
                acc += bias.get(oc).copied().unwrap_or(0);
                let q = requant[oc].apply(acc) + output.zero_point;
                y[(oy * ow + ox) * cout + oc] = q.clamp(range.0, range.1) as f32;
            }
        }
    }
}

fn avg_pool(x: &[f32], in_shape: &[usize], y: &mut [f32], out_shape: &[usize], window: &Window, range: (i32, i32)) {
    let (ih, iw, c) = (in_shape[0] as isize, in_shape[1] as isize, in_shape[2]);
    let (oh, ow) = (out_shape[0], out_shape[1]);
    for oy in 0..oh {
        for ox in 0..ow {
            for ch in 0..c {
                let (mut acc, mut count) = (0i32, 0i32);
                for ky in 0..window.kernel[0] {
                    let iy = (oy * window.strides[0] + ky) as isize - window.pads.top as isize;
                    for kx in 0..window.kernel[1] {
                        let ix = (ox * window.strides[1] + kx) as isize - window.pads.left as isize;
                        if iy >= 0 && iy < ih && ix >= 0 && ix < iw {
                            acc += x[((iy * iw + ix) as usize) * c + ch] as i32;
                            count += 1;
                        }
                    }
                }
                // Rounded half away from zero, as TFLite's reference divides.
                let avg = if count == 0 {
                    0
                } else if acc > 0 {
                    (acc + count / 2) / count
                } else {
                    (acc - count / 2) / count
                };
                y[(oy * ow + ox) * c + ch] = avg.clamp(range.0, range.1) as f32;
            }
        }
    }
}

/// gemmlowp fixed point: raw int32 values with `31 − integer_bits` fractional bits.
mod fixed {
    use super::{rounding_divide_by_pot, saturating_rounding_doubling_high_mul as mul, saturating_shift_left};

    /// `Rescale` from `from` to `to` integer bits.
    pub fn rescale(raw: i32, from: i32, to: i32) -> i32 {
        let exponent = from - to;
        match exponent.signum() {
            0 => raw,
            1 => saturating_shift_left(raw, exponent),
            _ => rounding_divide_by_pot(raw, -exponent),
        }
    }

    /// exp(x) for x in [−1/4, 0), 0 integer bits in and out.
    fn exp_on_interval_between_negative_one_quarter_and_0_excl(a: i32) -> i32 {
        const CONSTANT_TERM: i32 = 1895147668; // exp(−1/8)
        const ONE_THIRD: i32 = 715827883;
        let x = a.wrapping_add(1 << 28); // a + 1/8
        let x2 = mul(x, x);
        let x3 = mul(x2, x);
        let x4 = mul(x2, x2);
        let x4_over_4 = rounding_divide_by_pot(x4, 2);
        let poly = rounding_divide_by_pot(mul(x4_over_4.wrapping_add(x3), ONE_THIRD).wrapping_add(x2), 1);
        CONSTANT_TERM.wrapping_add(mul(CONSTANT_TERM, x.wrapping_add(poly)))
    }

    /// exp(a) for a ≤ 0 given with 5 integer bits; the result has 0.
    pub fn exp_on_negative_values(a: i32) -> i32 {
        const INTEGER_BITS: i32 = 5;
        const FRACTIONAL_BITS: i32 = 31 - INTEGER_BITS;
        let one_quarter = 1i32 << (FRACTIONAL_BITS - 2);
        let mask = one_quarter - 1;
        let a_mod_quarter_minus_one_quarter = (a & mask).wrapping_sub(one_quarter);
        let mut result = exp_on_interval_between_negative_one_quarter_and_0_excl(rescale(
            a_mod_quarter_minus_one_quarter,
            INTEGER_BITS,
            0,
        ));
        let remainder = a_mod_quarter_minus_one_quarter.wrapping_sub(a);
        // exp(−2^k) for k = −2 ..= 4, as 0-integer-bit constants.
        const BARREL: [(i32, i32); 7] =
            [(-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308), (2, 39332535), (3, 720401), (4, 242)];
        for (exponent, multiplier) in BARREL {
            if INTEGER_BITS > exponent {
                let bit = 1i32 << (FRACTIONAL_BITS + exponent);
                if remainder & bit != 0 {
                    result = mul(result, multiplier);
                }
            }
        }
        if a == 0 {
            i32::MAX
        } else {
            result
        }
    }

    /// 1 / (1 + x) for x in [0, 1), 0 integer bits in and out.
    pub fn one_over_one_plus_x_for_x_in_0_1(a: i32) -> i32 {
        let half_denominator = {
            let sum = a as i64 + i32::MAX as i64;
            let sign = if sum >= 0 { 1 } else { -1 };
            ((sum + sign) / 2) as i32
        };
        const C48_OVER_17: i32 = 1515870810; // 2 integer bits
        const CNEG32_OVER_17: i32 = -1010580540;
        const ONE_F2: i32 = 1 << 29;
        let mut x = C48_OVER_17.wrapping_add(mul(half_denominator, CNEG32_OVER_17));
        for _ in 0..3 {
            let half_denominator_times_x = mul(half_denominator, x);
            let one_minus = ONE_F2.wrapping_sub(half_denominator_times_x);
            x = x.wrapping_add(rescale(mul(x, one_minus), 4, 2));
        }
        // ExactMulByPot<−1> (2 → 1 integer bits, same raw), then to 0 integer bits.
        rescale(x, 1, 0)
    }
}

/// TFLite's reference int8 softmax over each row of `x` (one image's logits).
fn softmax(x: &[f32], y: &mut [f32], input_multiplier: i32, input_left_shift: i32, diff_min: i32) {
    const ACCUMULATION_INTEGER_BITS: i32 = 12;
    let max = x.iter().map(|&v| v as i32).max().unwrap_or(-128).max(-128);
    let rescaled = |v: f32| -> Option<i32> {
        let diff = v as i32 - max;
        (diff >= diff_min)
            .then(|| saturating_rounding_doubling_high_mul(diff.wrapping_mul(1 << input_left_shift), input_multiplier))
    };
    let mut sum = 0i32;
    for &v in x {
        if let Some(d) = rescaled(v) {
            sum = sum.wrapping_add(fixed::rescale(fixed::exp_on_negative_values(d), 0, ACCUMULATION_INTEGER_BITS));
        }
    }
    let headroom_plus_one = (sum as u32).leading_zeros() as i32;
    let num_bits_over_unit = ACCUMULATION_INTEGER_BITS - headroom_plus_one;
    let shifted_sum_minus_one =
        (sum as u32).checked_shl(headroom_plus_one as u32).unwrap_or(0).wrapping_sub(1u32 << 31) as i32;
    let shifted_scale = fixed::one_over_one_plus_x_for_x_in_0_1(shifted_sum_minus_one);
    for (o, &v) in y.iter_mut().zip(x) {
        *o = match rescaled(v) {
            Some(d) => {
                let e = fixed::exp_on_negative_values(d);
                let unsat = rounding_divide_by_pot(
                    saturating_rounding_doubling_high_mul(shifted_scale, e),
                    num_bits_over_unit + 31 - 8,
                );
                (unsat - 128).clamp(-128, 127) as f32
            }
            None => -128.0,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_primitives() {
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(4, 1), 2);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(saturating_rounding_doubling_high_mul(1 << 30, 1 << 30), 1 << 29);
        let r = Requant::new(0.5);
        assert_eq!((r.multiplier, r.shift), (1 << 30, 0));
        assert_eq!(r.apply(101), 51);
        let r = Requant::new(3.0);
        assert_eq!(r.apply(7), 21);
        assert_eq!(frexp(0.75), (0.75, 0));
        assert_eq!(frexp(3.0), (0.75, 2));
    }

    #[test]
    fn fixed_point_exp_and_reciprocal_track_the_reals() {
        for x in [-0.01f64, -0.3, -1.0, -2.5, -7.9] {
            let raw = (x * (1 << 26) as f64) as i32;
            let e = fixed::exp_on_negative_values(raw) as f64 / 2f64.powi(31);
            assert!((e - x.exp()).abs() < 1e-6, "exp({x}) = {e}");
        }
        for x in [0.0f64, 0.25, 0.5, 0.99] {
            let raw = (x * 2f64.powi(31)) as i32;
            let r = fixed::one_over_one_plus_x_for_x_in_0_1(raw) as f64 / 2f64.powi(31);
            assert!((r - 1.0 / (1.0 + x)).abs() < 1e-6, "1/(1+{x}) = {r}");
        }
    }
}
