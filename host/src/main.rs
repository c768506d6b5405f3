//! The `prism` binary: a thin layer over `prism_host::cli`.

fn main() {
    std::process::exit(prism_host::cli::main());
}
