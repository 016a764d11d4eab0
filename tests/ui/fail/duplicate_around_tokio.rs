// A second attribute under another name, with `#[tokio::main]` between the two: tokio moves the
// first one's body into a block of its own before the second one sees it.
use pidlockfile::single_instance as only_one;

#[pidlockfile::single_instance(path = "/tmp/a.pid")]
#[tokio::main]
#[only_one(path = "/tmp/b.pid")]
async fn main() {}
