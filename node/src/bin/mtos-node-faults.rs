//! `mtos-node` with test-only fault injection (`[faults]` in its config;
//! cargo feature `faults`): what the workspace's tests run.

fn main() -> std::process::ExitCode {
    mtos_node::cli::main(mtos_node::config::FaultPolicy::Honour)
}
