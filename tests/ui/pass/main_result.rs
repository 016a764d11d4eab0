#![deny(warnings)]

use std::error::Error;

#[pidlockfile::single_instance(path = "/tmp/pidlock-ui-main-result.pid", timeout = "forever")]
fn main() -> Result<(), Box<dyn Error>> {
    let value: u32 = "42".parse()?;
    if value == 0 {
        return Err("zero".into());
    }
    Ok(())
}
