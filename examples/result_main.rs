//! A `main` returning `Result`: a conflict comes back as an error, exactly as `?` would return
//! it, so `Box<dyn Error>`, `anyhow::Error` and your own error types work.
//!
//! ```text
//! cargo run --example result_main
//! ```
#![warn(clippy::pedantic)]

use std::error::Error;

#[pidlockfile::single_instance(path = std::env::temp_dir().join("pidlock-example-result.pid"))]
fn main() -> Result<(), Box<dyn Error>> {
    let config: u32 = "8080".parse()?;
    println!(
        "listening on port {config} (pid {}), the only copy running",
        std::process::id()
    );
    Ok(())
}
