#![deny(warnings)]

use std::process::ExitCode;

#[pidlockfile::single_instance(path = "/tmp/pidlock-ui-exit-code.pid", exit_code = 75, timeout = 2.5, quiet)]
fn main() -> ExitCode {
    ExitCode::SUCCESS
}
