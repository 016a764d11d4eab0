//! This package's root is `tests/` itself, so cargo discovers none of its tests: each must be a
//! `[[test]]` in `tests/Cargo.toml`. A test file that is not listed would never run, silently;
//! this fails instead.

#[test]
fn every_test_file_is_listed_in_the_manifest() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let manifest = std::fs::read_to_string(format!("{dir}/Cargo.toml")).unwrap();
    let mut missing = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if let Some(stem) = name.strip_suffix(".rs")
            && !manifest.contains(&format!("[[test]]\nname = \"{stem}\"\npath = \"{name}\"\n"))
        {
            missing.push(name);
        }
    }
    assert!(
        missing.is_empty(),
        "not listed as [[test]] in tests/Cargo.toml, so never run: {missing:?}"
    );
}
