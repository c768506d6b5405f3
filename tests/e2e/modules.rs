//! Bad modules and ABI abuse get typed errors; the node keeps serving.

use crate::support::{cluster, run, run_ok};
use prism_abi::ErrorKind;
use prism_guests::{HELLO, TESTKIT};

async fn failure(module: &[u8], entry: &str) -> prism_abi::WireError {
    let c = cluster(1.0);
    let err = run(&c, module, entry, "[]").await.unwrap_err();
    // The same cluster still runs a good job afterwards.
    assert_eq!(
        run_ok(&c, HELLO, "main", r#"["again"]"#).await,
        "Hello, again, from a Prism task!"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_are_an_invalid_module() {
    let err = failure(b"\0asm\x01\0\0\0garbage", "main").await;
    assert_eq!(err.kind, ErrorKind::InvalidModule);
    let err = failure(b"definitely not wasm", "main").await;
    assert_eq!(err.kind, ErrorKind::InvalidModule);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_imports_are_refused_by_name() {
    let wat = r#"(module
        (import "env" "open_socket" (func))
        (memory (export "memory") 1)
        (func (export "__prism_main_main") (param i32)))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::InvalidModule);
    assert!(err.message.contains("env::open_socket"), "{}", err.message);

    let wat = r#"(module
        (import "prism_v1" "format_disk" (func))
        (memory (export "memory") 1)
        (func (export "__prism_main_main") (param i32)))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert!(
        err.message.contains("prism_v1::format_disk"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_with_the_wrong_signature_or_no_memory_are_refused() {
    let wat = r#"(module (memory (export "memory") 1) (func (export "__prism_main_main")))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert!(err.message.contains("(i32) -> ()"), "{}", err.message);
    let wat = r#"(module (func (export "__prism_main_main") (param i32)))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert!(err.message.contains("memory"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_entry_is_function_not_found() {
    let err = failure(TESTKIT, "no_such_driver").await;
    assert_eq!(err.kind, ErrorKind::FunctionNotFound);
    assert!(err.message.contains("no_such_driver"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_bounds_pointers_trap_naming_the_call() {
    let wat = r#"(module
        (import "prism_v1" "get" (func $get (param i32 i64 i32) (result i32)))
        (memory (export "memory") 1)
        (func (export "__prism_main_main") (param i32)
            (drop (call $get (i32.const 0x7fffffff) (i64.const -1) (i32.const 0)))))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Trap);
    assert!(err.message.contains("prism_v1.get"), "{}", err.message);
    assert!(
        err.message.contains("outside linear memory"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_without_output_and_stack_overflow_are_traps() {
    let wat =
        r#"(module (memory (export "memory") 1) (func (export "__prism_main_main") (param i32)))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Trap);
    assert!(
        err.message.contains("without producing a value"),
        "{}",
        err.message
    );

    let wat = r#"(module (memory (export "memory") 1)
        (func $down (param i32) (call $down (local.get 0)))
        (func (export "__prism_main_main") (param i32) (call $down (local.get 0))))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Trap);
    assert!(
        err.message.to_lowercase().contains("stack"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_module_whose_initial_memory_exceeds_the_limit_is_refused_at_load() {
    // 8192 pages = 512 MiB, over the 256 MiB default: it could never run.
    let wat = r#"(module (memory (export "memory") 8192)
        (func (export "__prism_main_main") (param i32)))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::InvalidModule);
    assert!(err.message.contains("536870912"), "{}", err.message);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_do_not_disturb_a_concurrent_job() {
    let c = cluster(2.0);
    let (failures, hello) = tokio::join!(
        run(&c, prism_guests::FAILURES, "main", "[]"),
        run(&c, HELLO, "main", r#"["neighbour"]"#),
    );
    assert!(failures.is_ok());
    assert_eq!(hello.unwrap(), "Hello, neighbour, from a Prism task!");
}

/// The one compiled artifact of `hash` in the node's cache (named
/// `<hash>.<tenant key>.cwasm`: compilations are per tenant).
fn artifact_of(
    data_dir: &std::path::Path,
    hash: prism_host::ids::ModuleHash,
) -> std::path::PathBuf {
    let prefix = format!("{hash}.");
    let found: Vec<_> = std::fs::read_dir(data_dir.join("modules"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            name.starts_with(&prefix) && name.ends_with(".cwasm")
        })
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_modules_are_cached_on_disk_and_reused_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::support::config(1.0);
    cfg.data_dir = Some(dir.path().to_path_buf());
    {
        let c = prism_host::head::EmbeddedCluster::start(cfg.clone()).unwrap();
        assert_eq!(
            run_ok(&c, HELLO, "main", r#"["one"]"#).await,
            "Hello, one, from a Prism task!"
        );
        assert!(c.shutdown(std::time::Duration::from_secs(10)).await);
    }
    let hash = prism_host::ids::ModuleHash::of(HELLO);
    let artifact = artifact_of(dir.path(), hash);
    assert!(
        artifact.exists(),
        "compiled artifact at {}",
        artifact.display()
    );
    let modified = std::fs::metadata(&artifact).unwrap().modified().unwrap();
    let c = prism_host::head::EmbeddedCluster::start(cfg).unwrap();
    assert_eq!(
        run_ok(&c, HELLO, "main", r#"["two"]"#).await,
        "Hello, two, from a Prism task!"
    );
    assert_eq!(
        std::fs::metadata(&artifact).unwrap().modified().unwrap(),
        modified,
        "not recompiled"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_cannot_claim_a_retryable_error_kind() {
    // Output kind 1 (application error) carrying {"kind": "trap", "message": "x"}:
    // the host files it as the application error it is.
    let wat = r#"(module
        (import "prism_v1" "output" (func $output (param i32 i32 i32)))
        (memory (export "memory") 1)
        (data (i32.const 16) "\82\a4kind\a4trap\a7message\a1x")
        (func (export "__prism_main_main") (param i32)
            (call $output (i32.const 1) (i32.const 16) (i32.const 21))))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Application);
    assert_eq!(err.message, "x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_compiled_artifact_is_recompiled_not_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = crate::support::config(1.0);
    cfg.data_dir = Some(dir.path().to_path_buf());
    {
        let c = prism_host::head::EmbeddedCluster::start(cfg.clone()).unwrap();
        run_ok(&c, HELLO, "main", "[]").await;
        assert!(c.shutdown(std::time::Duration::from_secs(10)).await);
    }
    let hash = prism_host::ids::ModuleHash::of(HELLO);
    let artifact = artifact_of(dir.path(), hash);
    std::fs::write(&artifact, b"\x7fELF not really a compiled module").unwrap();
    let c = prism_host::head::EmbeddedCluster::start(cfg).unwrap();
    assert_eq!(
        run_ok(&c, HELLO, "main", r#"["after"]"#).await,
        "Hello, after, from a Prism task!"
    );
    assert!(
        std::fs::read(&artifact).unwrap().len() > 1000,
        "rewritten by a fresh compile"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for sub in ["modules", "spill"] {
            let mode = std::fs::metadata(dir.path().join(sub))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o700, "{sub} is private to the node");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_put_parts_cannot_make_a_value_past_the_memory_limit() {
    // 8,192 parts, each the whole 128 KiB memory: 1 GiB from a guest
    // limited to 256 MiB.
    let wat = r#"(module
        (import "prism_v1" "put_parts" (func $put_parts (param i32 i32 i32) (result i32)))
        (memory (export "memory") 2)
        (func (export "__prism_main_main") (param i32)
            (local $i i32)
            (loop $fill
                (i32.store (i32.mul (local.get $i) (i32.const 8)) (i32.const 0))
                (i32.store (i32.add (i32.mul (local.get $i) (i32.const 8)) (i32.const 4))
                    (i32.const 131072))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $fill (i32.lt_u (local.get $i) (i32.const 8192))))
            (drop (call $put_parts (i32.const 0) (i32.const 8192) (i32.const 65536)))))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Trap);
    assert!(
        err.message.contains("prism_v1.put_parts")
            && err
                .message
                .contains("more than this instance's memory limit"),
        "{}",
        err.message
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freeing_an_object_clears_it_from_the_stage() {
    // put, get (stages the value), free it, then take: nothing is staged.
    let wat = r#"(module
        (import "prism_v1" "put" (func $put (param i32 i32 i32) (result i32)))
        (import "prism_v1" "get" (func $get (param i32 i64 i32) (result i32)))
        (import "prism_v1" "free" (func $free (param i32 i32) (result i32)))
        (import "prism_v1" "take" (func $take (param i32)))
        (memory (export "memory") 1)
        (data (i32.const 0) "\c4\03abc")
        (func (export "__prism_main_main") (param i32)
            (drop (call $put (i32.const 0) (i32.const 5) (i32.const 64)))
            (drop (call $get (i32.const 64) (i64.const -1) (i32.const 128)))
            (if (i32.ne (call $free (i32.const 64) (i32.const 1)) (i32.const 1))
                (then unreachable))
            (call $take (i32.const 256))))"#;
    let err = failure(wat.as_bytes(), "main").await;
    assert_eq!(err.kind, ErrorKind::Trap);
    assert!(
        err.message.contains("prism_v1.take: nothing is staged"),
        "{}",
        err.message
    );
}
