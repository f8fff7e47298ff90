//! `mtos-node`: the relay daemon of mtos, and the directory authority. It
//! refuses a configuration with a `[faults]` section, whatever features
//! its library was built with.

fn main() -> std::process::ExitCode {
    mtos_node::cli::main(mtos_node::config::FaultPolicy::Refuse)
}
