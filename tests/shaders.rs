//! Every kernel variant's WGSL (generated constants + `common.wgsl` + its
//! files) parses and validates with naga, and with each set of override
//! constants ResNet8's lowering gives it, translates to SPIR-V (checked by
//! `spirv-val`), MSL and HLSL: the Metal and DX12 paths we cannot run here at
//! least translate cleanly. No GPU needed.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::model_h5;
use resnet8::engine::gpu::kernels::{Input, Precision, Variant};
use resnet8::engine::gpu::lower::{self, DeviceCaps};
use resnet8::engine::gpu::{SHADER_COMMON, SHADER_SOURCES};
use resnet8::{import, passes};

fn parse(variant: Variant, input: Input, precision: Precision) -> (naga::Module, naga::valid::ModuleInfo) {
    let source = variant.source(input, precision);
    let module = naga::front::wgsl::parse_str(&source)
        .unwrap_or_else(|e| panic!("{}: {}", variant.name(), e.emit_to_string(&source)));
    let mut caps = naga::valid::Capabilities::empty();
    if variant.uses_subgroups() {
        caps |= naga::valid::Capabilities::SUBGROUP;
    }
    if precision == Precision::F16 {
        caps |= naga::valid::Capabilities::SHADER_FLOAT16;
    }
    let info = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps)
        .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
        .subgroup_operations(naga::valid::SubgroupOperationSet::all())
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {}", variant.name(), e.emit_to_string(&source)));
    (module, info)
}

#[test]
fn every_shader_file_is_embedded_and_used() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    assert_eq!(std::fs::read_to_string(dir.join("common.wgsl")).unwrap(), SHADER_COMMON);
    let mut used = BTreeSet::new();
    for v in Variant::ALL {
        for input in [Input::F32, Input::Packed8] {
            if input == Input::F32 || v.takes_input_part() {
                used.extend(v.files(input));
                parse(v, input, Precision::F32);
                if v.takes_f16() {
                    parse(v, input, Precision::F16);
                }
            }
        }
    }
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if name == "common.wgsl" || !name.ends_with(".wgsl") {
            continue;
        }
        let embedded = SHADER_SOURCES.iter().find(|(f, _)| *f == name).unwrap_or_else(|| panic!("{name} not embedded"));
        assert_eq!(embedded.1, std::fs::read_to_string(&path).unwrap(), "{name}: the engine embeds a different text");
        assert!(used.contains(name.as_str()), "{name} is used by no kernel variant");
    }
}

#[test]
fn resnet8_pipelines_translate_to_spirv_msl_and_hlsl() {
    let model = import::load(&model_h5()).unwrap();
    let int8 = import::load(&common::data_dir().join("models/pretrainedResnet_quant.tflite")).unwrap();
    let mut pipelines = BTreeSet::new();
    let graphs = [model.graph.clone(), passes::optimize(&model.graph), int8.graph];
    // Subgroup kernels share weights over 8 lanes, or 16 where every subgroup has 16.
    let configs = [(Precision::F32, 8), (Precision::F32, 16), (Precision::F16, 8), (Precision::F16, 16)];
    for (graph, (precision, subgroup_lanes)) in graphs.iter().flat_map(|g| configs.map(|c| (g, c))) {
        let caps = DeviceCaps {
            max_uniform_buffer_binding_size: 65536,
            max_texture_dimension_2d: 8192,
            subgroup_lanes,
            precision,
        };
        for id in 0..graph.nodes.len() {
            for variant in std::iter::once(None).chain(Variant::CONV.map(Some)).chain(Variant::INT8_CONV.map(Some)) {
                for input in [Input::F32, Input::Packed8] {
                    if let Ok(Some(l)) = lower::lower(graph, id, variant, caps, input) {
                        let constants = l.constants.iter().map(|&(k, v)| (k, v.to_bits())).collect::<Vec<_>>();
                        pipelines.insert((l.variant, l.input, l.precision, constants));
                    }
                }
            }
        }
    }
    assert!(Variant::CONV.iter().all(|c| pipelines.iter().any(|(v, _, _, _)| v == c)));
    assert!(pipelines.iter().any(|(_, _, p, _)| *p == Precision::F16));
    for v in
        [Variant::Int8Softmax, Variant::Int8Conv, Variant::Int8ConvBlock, Variant::Int8ConvDot4, Variant::Int8Dense]
    {
        assert!(pipelines.iter().any(|(p, _, _, _)| *p == v), "{v:?} is translated too");
    }
    let spirv_val =
        which("spirv-val").expect("spirv-val not found: install Debian's spirv-tools (scripts/setup.sh does)");
    let dir = tempfile::tempdir().unwrap();
    assert!(pipelines.iter().any(|(_, input, _, _)| *input == Input::Packed8));
    for (variant, input, precision, constants) in &pipelines {
        let (module, info) = parse(*variant, *input, *precision);
        let mut pc = naga::back::PipelineConstants::default();
        for (k, bits) in constants {
            pc.insert(k.to_string(), f64::from_bits(*bits));
        }
        let entry = variant.spec().1;
        let what = format!("{} {input:?} {precision:?} {constants:?}", variant.name());
        let (module, info) = naga::back::pipeline_constants::process_overrides(
            &module,
            &info,
            Some((naga::ShaderStage::Compute, entry)),
            &pc,
        )
        .unwrap_or_else(|e| panic!("{what}: {e}"));
        let spv_pipeline =
            naga::back::spv::PipelineOptions { shader_stage: naga::ShaderStage::Compute, entry_point: entry.into() };
        // SPIR-V 1.3 (Vulkan 1.1), as wgpu emits it for subgroup operations.
        let spv_options = naga::back::spv::Options { lang_version: (1, 3), ..Default::default() };
        let words = naga::back::spv::write_vec(&module, &info, &spv_options, Some(&spv_pipeline))
            .unwrap_or_else(|e| panic!("{what}: SPIR-V: {e}"));
        let file = dir.path().join(format!("{}.spv", variant.name()));
        std::fs::write(&file, bytemuck_words(&words)).unwrap();
        let out =
            std::process::Command::new(&spirv_val).args(["--target-env", "vulkan1.1"]).arg(&file).output().unwrap();
        assert!(out.status.success(), "{what}: spirv-val: {}", String::from_utf8_lossy(&out.stderr));
        let msl_pipeline = naga::back::msl::PipelineOptions {
            entry_point: Some((naga::ShaderStage::Compute, entry.into())),
            ..Default::default()
        };
        naga::back::msl::write_string(&module, &info, &Default::default(), &msl_pipeline)
            .unwrap_or_else(|e| panic!("{what}: MSL: {e}"));
        let hlsl_pipeline =
            naga::back::hlsl::PipelineOptions { entry_point: Some((naga::ShaderStage::Compute, entry.into())) };
        let mut hlsl = String::new();
        naga::back::hlsl::Writer::new(&mut hlsl, &Default::default(), &hlsl_pipeline)
            .write(&module, &info, None)
            .unwrap_or_else(|e| panic!("{what}: HLSL: {e}"));
    }
    eprintln!("{} pipelines translated to SPIR-V (spirv-val clean), MSL and HLSL", pipelines.len());
}

fn bytemuck_words(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

fn which(tool: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(tool)).find(|p| p.is_file())
}
