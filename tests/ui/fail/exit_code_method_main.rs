// A method called `main` is not the program's entry point: it panics on a conflict, so an exit
// code does not apply.
struct Server;

impl Server {
    #[pidlockfile::single_instance(path = "/tmp/server.pid", exit_code = 3)]
    fn main(&self) {}
}

fn main() {
    Server.main();
}
