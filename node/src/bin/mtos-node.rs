//! `mtos-node`: the relay daemon of mtos, and the directory authority.

fn main() -> std::process::ExitCode {
    mtos_node::cli::main()
}
