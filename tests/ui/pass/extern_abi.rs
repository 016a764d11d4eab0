#![deny(warnings)]
//! Non-Rust ABIs: fine where a conflict needs no panic (a `Result`), or where a panic unwinds.

fn path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("ui-extern-{name}-{}.pid", std::process::id()))
}

#[allow(improper_ctypes_definitions)]
#[pidlockfile::single_instance(path = path("c-result"))]
extern "C" fn c_result(again: bool) -> Result<u32, pidlockfile::Error> {
    if again {
        assert!(c_result(false).is_err());
    }
    Ok(1)
}

#[pidlockfile::single_instance(path = path("c-unwind"))]
extern "C-unwind" fn c_unwind() -> u32 {
    2
}

#[pidlockfile::single_instance(path = path("rust"))]
extern "Rust" fn rust() -> u32 {
    3
}

fn main() {
    assert_eq!(c_result(true).unwrap() + c_unwind() + rust(), 6);
}
