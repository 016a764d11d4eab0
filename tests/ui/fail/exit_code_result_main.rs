// A `main` that returns a `Result` reports a conflict as its error: `exit_code` cannot apply,
// also when an alias hides the `Result`.
type AppResult = Result<(), Box<dyn std::error::Error>>;

#[pidlockfile::single_instance(exit_code = 3)]
fn main() -> AppResult {
    Ok(())
}
