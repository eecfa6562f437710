//! Every WGSL file parses and validates with naga (no GPU needed), and the
//! engine embeds every file in `shaders/`.

use std::path::Path;

use resnet8::engine::gpu::SHADER_SOURCES;

#[test]
fn every_shader_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wgsl"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for path in &files {
        let source = std::fs::read_to_string(path).unwrap();
        let module = naga::front::wgsl::parse_str(&source)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        naga::valid::Validator::new(naga::valid::ValidationFlags::all(), naga::valid::Capabilities::empty())
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", path.display(), e.emit_to_string(&source)));
        assert!(!module.entry_points.is_empty(), "{} has no entry point", path.display());
        let name = path.file_name().unwrap().to_str().unwrap();
        let embedded = SHADER_SOURCES
            .iter()
            .find(|(f, _)| *f == name)
            .unwrap_or_else(|| panic!("{name} is not in SHADER_SOURCES"));
        assert_eq!(embedded.1, source, "{name}: the engine embeds a different text");
    }
    assert_eq!(files.len(), SHADER_SOURCES.len());
}
