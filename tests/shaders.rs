//! Every WGSL file parses and validates with naga (no GPU needed), as the
//! engine builds it (`common.wgsl` + the op family's file), and the engine
//! embeds every file in `shaders/`.

use std::path::Path;

use resnet8::engine::gpu::{shader_source, SHADER_COMMON, SHADER_SOURCES};

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert_eq!(std::fs::read_to_string(dir.join("common.wgsl")).unwrap(), SHADER_COMMON);
    let mut checked = 0;
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        if name == "common.wgsl" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let embedded = SHADER_SOURCES
            .iter()
            .find(|(f, _)| *f == name)
            .unwrap_or_else(|| panic!("{name} is not in SHADER_SOURCES"));
        assert_eq!(embedded.1, text, "{name}: the engine embeds a different text");
        let source = shader_source(name).unwrap();
        let module =
            naga::front::wgsl::parse_str(&source).unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{name}: {}", e.emit_to_string(&source)));
        assert!(!module.entry_points.is_empty(), "{name} has no entry point");
        checked += 1;
    }
    assert_eq!(checked, SHADER_SOURCES.len());
}
