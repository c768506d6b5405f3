//! Generates the gRPC code from `prism/v1/prism.proto` with protox, a
//! protobuf compiler in Rust: no `protoc` binary is needed or downloaded.

fn main() {
    println!("cargo:rerun-if-changed=prism");
    let descriptors = protox::compile(["prism/v1/prism.proto"], ["."])
        .unwrap_or_else(|e| panic!("prism.proto does not compile: {e}"));
    tonic_prost_build::configure()
        // The head keeps job records in redb as JSON.
        .type_attribute(
            "prism.v1.JobInfo",
            "#[derive(serde::Serialize, serde::Deserialize)]",
        )
        // Object chunks, task arguments and results are sliced and passed
        // on without copying.
        .bytes(".prism.v1.ObjectChunk")
        .bytes(".prism.v1.TaskArg")
        .bytes(".prism.v1.ExecuteTaskReply")
        .compile_fds(descriptors)
        .unwrap_or_else(|e| panic!("generating gRPC code failed: {e}"));
}
