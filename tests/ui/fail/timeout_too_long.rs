// Too large for syn's integers: the message is about `timeout`.
#[pidlockfile::single_instance(timeout = 18446744073709551616)]
fn main() {}

#[pidlockfile::single_instance(timeout = 6000000000000000h)]
fn hours() {}
