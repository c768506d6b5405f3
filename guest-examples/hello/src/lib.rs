//! The smallest Prism program: a driver that calls one task.

/// Builds a greeting. Runs in its own WebAssembly instance.
#[prism::task]
fn greet(name: String) -> String {
    format!("Hello, {name}, from a Prism task!")
}

/// The driver: `prism run hello.wasm --args '["Ada"]'`.
#[prism::main]
fn main(name: Option<String>) -> prism::Result<String> {
    let name = name.unwrap_or_else(|| "world".to_string());
    prism::get(&greet::remote(name))
}
