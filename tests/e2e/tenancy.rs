//! Several tenants on one real head: tenants, namespaces, tokens and
//! their revocation, Cedar policies, quotas, fair sharing, sandbox
//! capabilities, and a hostile guest that tries everything against
//! another tenant while that tenant's work goes on.

use super::procs::{HeadProcess, admin_token, client, init, log_lines, prism_cli, start_head_with};
use prism_client::v1::{JobState, SubmitJobRequest};
use prism_client::{Client, ClientError};
use prism_host::security::ClusterFiles;
use serde_json::Value;
use std::time::Duration;
use tonic::Code;

fn code(e: ClientError) -> (Code, String) {
    match e {
        ClientError::Status(s) => (s.code(), s.message().to_string()),
        other => panic!("expected a status, got {other}"),
    }
}

fn head(files: &ClusterFiles) -> HeadProcess {
    start_head_with(files.dir(), &["--listen", "127.0.0.1:0", "--cpus", "2"])
}

/// Submits `entry` of `module` with JSON `args` in `namespace`.
async fn submit(c: &mut Client, module: &str, entry: &str, args: &str, namespace: &str) -> String {
    c.submit_request(SubmitJobRequest {
        module_hash: module.into(),
        entry: entry.into(),
        args_json: args.into(),
        namespace: namespace.into(),
        ..Default::default()
    })
    .await
    .unwrap_or_else(|e| panic!("{entry}: {e}"))
    .id
}

/// Runs a job to its end and returns its value as JSON.
async fn run(c: &mut Client, module: &str, entry: &str, args: &str, namespace: &str) -> Value {
    let id = submit(c, module, entry, args, namespace).await;
    let result = c.result(&id, true).await.unwrap();
    assert_eq!(
        result.job.as_ref().map(|j| j.state),
        Some(JobState::Succeeded as i32),
        "{entry}: {:?}",
        result.job
    );
    serde_json::from_str(&result.value_json).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_tenant_finds_nothing_of_another_and_hits_typed_limits() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin
        .create_tenant(
            "zeta",
            1.0,
            r#"{"queued_tasks": 5, "object_store_bytes": 3500000, "actors": 2, "jobs": 2, "cpus": 2}"#,
        )
        .await
        .unwrap();
    // A tenant-admin of zeta makes its namespace and its developer.
    let zoe = admin
        .issue_token("zeta", "zoe", "tenant-admin", 3600)
        .await
        .unwrap()
        .token;
    let mut zoe = client(&head, &files, &zoe).await;
    zoe.put_namespace(
        "",
        "sandbox",
        r#"{"max_task_memory": 67108864, "max_task_time_ms": 1000}"#,
        false,
    )
    .await
    .unwrap();
    let zed = zoe.issue_token("", "zed", "developer", 3600).await.unwrap();
    let mut zed = client(&head, &files, &zed.token).await;
    let ada = admin
        .issue_token("acme", "ada", "developer", 3600)
        .await
        .unwrap()
        .token;
    let mut ada = client(&head, &files, &ada).await;

    // acme keeps a secret in every way it can.
    let upload = ada
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap();
    let module = upload.hash.clone();
    let victim = submit(&mut ada, &module, "hide_secret", r#"["s3cret", 6000]"#, "").await;
    let handles = log_lines(&ada, &victim, &["object ", "actor ", "group "]).await;
    let (group_id, group_nodes) = handles[2].split_once(' ').unwrap();
    assert!(group_id.starts_with("acme."), "{group_id}");

    // zeta uploads the same bytes: it is not told acme has them.
    let again = zed
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap();
    assert_eq!(again.hash, module);
    assert!(!again.existed, "a tenant must not learn what another runs");

    // Everything acme holds, named or by forged handle, is not found.
    let args = format!(
        r#"[{}, {}, {{"info": {{"id": "{group_id}", "nodes": ["{group_nodes}"]}}}}]"#,
        handles[0], handles[1]
    );
    let seen = run(&mut zed, &module, "steal", &args, "").await;
    let seen: Vec<String> = serde_json::from_value(seen).unwrap();
    assert_eq!(seen[0], "object_not_found", "{seen:?}");
    assert_eq!(seen[1], "actor_died", "{seen:?}");
    // Looking the actor up by name answers exactly as for a name nobody has.
    assert_eq!(seen[2], seen[4], "{seen:?}");
    assert_eq!(seen[3], seen[4], "{seen:?}");
    assert_eq!(seen[5], "object_not_found", "{seen:?}");
    assert_eq!(seen[6], "invalid_argument", "{seen:?}");
    assert_eq!(seen[7], "object_not_found", "{seen:?}");
    assert_eq!(seen[8], "object_not_found", "{seen:?}");
    assert_eq!(seen[9], "invalid_argument", "{seen:?}");
    assert_eq!(seen[10], "freed 0", "{seen:?}");

    // Through the API: acme's job, actor and module do not exist for zeta.
    for outcome in [
        zed.job(&victim).await.map(|_| ()),
        zed.result(&victim, false).await.map(|_| ()),
        zed.logs(&victim).await.map(|_| ()),
        zed.stop(&victim).await.map(|_| ()),
        zed.call_actor("", "vault", "get", "[]").await.map(|_| ()),
    ] {
        assert_eq!(code(outcome.unwrap_err()).0, Code::NotFound);
    }
    assert!(zed.list().await.unwrap().iter().all(|j| j.tenant == "zeta"));
    let hello = ada
        .upload_module(prism_guests::HELLO.to_vec())
        .await
        .unwrap();
    let (status, _) = code(
        zed.submit(&hello.hash, "main", r#"["x"]"#, "")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Code::NotFound, "another tenant's module");
    let (status, message) = code(
        zed.submit_request(SubmitJobRequest {
            module_hash: module.clone(),
            tenant: "acme".into(),
            ..Default::default()
        })
        .await
        .unwrap_err(),
    );
    assert_eq!(status, Code::PermissionDenied, "{message}");
    let (status, _) = code(zed.submit(&module, "main", "[]", "nope").await.unwrap_err());
    assert_eq!(status, Code::NotFound, "a namespace that does not exist");

    // Meanwhile zeta exhausts what it may in its sandbox namespace, while
    // acme's work goes on and comes out right.
    let exhaust = submit(&mut zed, &module, "exhaust", "[20, 10, 1024, 4]", "sandbox").await;
    let sum = run(&mut ada, &module, "default_sum", "[20, 10]", "").await;
    assert_eq!(sum, 190);
    let result = zed.result(&exhaust, true).await.unwrap();
    let seen: Vec<String> =
        serde_json::from_str(&result.value_json).unwrap_or_else(|_| panic!("{:?}", result.job));
    assert_eq!(
        seen,
        [
            "memory_limit_exceeded",
            "deadline_exceeded",
            "permission_denied",
            "5:quota_exceeded",
            "3:quota_exceeded",
            "freed 3: ok",
            "2:quota_exceeded",
            "quota_exceeded",
            "quota_exceeded",
            "ok",
        ]
    );
    let escape = run(&mut zed, &module, "read_file", r#"["/etc/passwd"]"#, "").await;
    assert!(escape.as_str().unwrap().starts_with("err:"), "{escape}");

    // acme's secret is intact: the object, the actor (not killed), the
    // named object, and its placement group (not removed).
    let kept = ada.result(&victim, true).await.unwrap();
    assert_eq!(kept.value_json, r#"["s3cret",42,"s3cret",3]"#, "{kept:?}");
    assert_eq!(
        ada.call_actor("", "vault", "get", "[]").await.unwrap(),
        "42"
    );

    // zeta may run two jobs at once; the third is refused and nothing
    // already running is touched.
    let a = submit(&mut zed, &module, "sleep_then", "[1500, 1]", "").await;
    let b = submit(&mut zed, &module, "sleep_then", "[1500, 2]", "").await;
    let (status, message) = code(
        zed.submit(&module, "sleep_then", "[0, 3]", "")
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Code::ResourceExhausted, "{message}");
    assert!(
        message.starts_with("quota exceeded: tenant zeta"),
        "{message}"
    );
    assert_eq!(zed.result(&a, true).await.unwrap().value_json, "1");
    assert_eq!(zed.result(&b, true).await.unwrap().value_json, "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_roles_capabilities_and_revocation_hold() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let mut head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    let boss = admin
        .issue_token("acme", "boss", "tenant-admin", 3600)
        .await
        .unwrap()
        .token;
    let mut boss = client(&head, &files, &boss).await;

    // A tenant-admin runs its own tenant, nothing more.
    let (status, _) = code(boss.create_tenant("other", 1.0, "").await.unwrap_err());
    assert_eq!(status, Code::PermissionDenied);
    let (status, _) = code(boss.namespaces("default").await.unwrap_err());
    assert_eq!(status, Code::PermissionDenied);
    let (status, _) = code(
        boss.issue_token("", "root", "cluster-admin", 60)
            .await
            .unwrap_err(),
    );
    assert_eq!(status, Code::PermissionDenied);
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("hello.txt"), "hello").unwrap();
    let caps = format!(r#"{{"data_dir": "{}"}}"#, data.path().display());
    let (status, _) = code(
        boss.put_namespace("", "data", &caps, false)
            .await
            .unwrap_err(),
    );
    assert_eq!(
        status,
        Code::PermissionDenied,
        "a host path is the operator's"
    );
    admin
        .put_namespace("acme", "data", &caps, false)
        .await
        .unwrap();
    boss.put_namespace("", "ml", "", false).await.unwrap();
    boss.put_namespace("", "precise", r#"{"clock_resolution_us": 1}"#, false)
        .await
        .unwrap();

    // Policies: an invalid set is refused and changes nothing.
    let policies = [
        include_str!("../../policies/examples/analyst.cedar"),
        include_str!("../../policies/examples/gpu-ml-only.cedar"),
        include_str!("../../policies/examples/data-reader.cedar"),
    ]
    .join("\n");
    boss.set_policy("", &policies).await.unwrap();
    let (status, message) = code(
        boss.set_policy(
            "",
            r#"permit(principal, action == Prism::Action::"Fly", resource);"#,
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(status, Code::InvalidArgument);
    assert!(message.contains("Fly"), "{message}");
    assert_eq!(boss.policy("").await.unwrap().policies, policies);

    let dev = boss
        .issue_token("", "dev", "developer", 3600)
        .await
        .unwrap()
        .token;
    let mut dev = client(&head, &files, &dev).await;
    let module = dev
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;

    // The data directory: readable in `data` only, never writable.
    let read = run(
        &mut dev,
        &module,
        "read_file",
        r#"["/data/hello.txt"]"#,
        "data",
    )
    .await;
    assert_eq!(read, "ok:hello");
    let write = run(
        &mut dev,
        &module,
        "write_file",
        r#"["/data/new.txt", "x"]"#,
        "data",
    )
    .await;
    assert!(write.as_str().unwrap().starts_with("err:"), "{write}");
    assert!(!data.path().join("new.txt").exists());
    let elsewhere = run(&mut dev, &module, "read_file", r#"["/data/hello.txt"]"#, "").await;
    assert!(
        elsewhere.as_str().unwrap().starts_with("err:"),
        "{elsewhere}"
    );

    // GPUs: permitted in `ml` only (whether the node has one is another
    // matter), refused elsewhere.
    let gpu = |ns: &'static str| {
        let mut dev = dev.clone();
        let module = module.clone();
        async move {
            let id = dev
                .submit_request(SubmitJobRequest {
                    module_hash: module,
                    entry: "add".into(),
                    args_json: "[1, 2]".into(),
                    namespace: ns.into(),
                    num_gpus: 1.0,
                    ..Default::default()
                })
                .await
                .unwrap()
                .id;
            dev.result(&id, true).await.unwrap().job.unwrap().error_kind
        }
    };
    assert_eq!(gpu("").await, "permission_denied");
    assert_ne!(gpu("ml").await, "permission_denied");

    // Clocks are coarse unless the namespace grants precision.
    assert_eq!(run(&mut dev, &module, "clock_probe", "[]", "").await, 0);
    assert_ne!(
        run(&mut dev, &module, "clock_probe", "[]", "precise").await,
        0
    );

    // The read-only analyst: reads, nothing else, whatever its role says.
    let ana = boss
        .issue_token("", "ana", "developer", 3600)
        .await
        .unwrap()
        .token;
    let mut ana = client(&head, &files, &ana).await;
    let job = submit(&mut dev, &module, "add", "[2, 3]", "").await;
    assert_eq!(ana.result(&job, true).await.unwrap().value_json, "5");
    let (status, message) = code(ana.submit(&module, "add", "[1, 1]", "").await.unwrap_err());
    assert_eq!(status, Code::PermissionDenied, "{message}");

    // Every decision is audited, with the policy that made it.
    let audit = std::fs::read_to_string(files.dir().join("audit.log")).unwrap();
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().any(|l| l["subject"] == "ana"
        && l["action"] == "SubmitJob"
        && l["decision"] == "deny"
        && l["policies"][0] == "analyst-read-only"));
    assert!(
        lines.iter().any(|l| l["subject"] == "dev"
            && l["action"] == "SubmitJob"
            && l["decision"] == "allow")
    );

    // Revocation: at once, and it survives a restart of the head.
    let temp = boss.issue_token("", "temp", "viewer", 3600).await.unwrap();
    let mut holder = client(&head, &files, &temp.token).await;
    holder.list().await.unwrap();
    assert_eq!(
        boss.revoke_token(&temp.token, "").await.unwrap().id,
        temp.id
    );
    let (status, message) = code(holder.list().await.unwrap_err());
    assert_eq!(
        (status, message.as_str()),
        (Code::Unauthenticated, "token revoked")
    );
    head.kill();
    head = start_head_with(files.dir(), &["--listen", "127.0.0.1:0", "--cpus", "2"]);
    let mut holder = client(&head, &files, &temp.token).await;
    let (status, _) = code(holder.list().await.unwrap_err());
    assert_eq!(status, Code::Unauthenticated);
    // The tenant's records survived too; deleting it ends its tokens.
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    let mut dev = client(&head, &files, &boss_token_after_restart(&mut admin).await).await;
    assert!(dev.list().await.is_ok());
    let (status, _) = code(admin.delete_namespace("acme", "default").await.unwrap_err());
    assert_eq!(status, Code::FailedPrecondition);
    admin.delete_tenant("acme").await.unwrap();
    let (status, message) = code(dev.list().await.unwrap_err());
    assert_eq!(status, Code::Unauthenticated, "{message}");
    // Its name is never given out again: nothing it left can reach a
    // new tenant.
    let (status, _) = code(admin.create_tenant("acme", 1.0, "").await.unwrap_err());
    assert_eq!(status, Code::AlreadyExists);
    drop(head);
}

/// A developer token of acme, issued by the restarted head.
async fn boss_token_after_restart(admin: &mut Client) -> String {
    let names: Vec<String> = admin
        .namespaces("acme")
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.name)
        .collect();
    assert_eq!(names, ["data", "default", "ml", "precise"]);
    admin
        .issue_token("acme", "late", "developer", 600)
        .await
        .unwrap()
        .token
}

/// A new tenant `name` and a client with a developer token of it.
async fn developer_of(
    admin: &mut Client,
    head: &HeadProcess,
    files: &ClusterFiles,
    name: &str,
) -> Client {
    admin.create_tenant(name, 1.0, "").await.unwrap();
    let token = admin
        .issue_token(name, "dev", "developer", 600)
        .await
        .unwrap()
        .token;
    client(head, files, &token).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fair_sharing_starts_a_small_tenant_while_another_floods_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    let mut big = developer_of(&mut admin, &head, &files, "big").await;
    let mut small = developer_of(&mut admin, &head, &files, "small").await;
    let module = big
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    small
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap();
    // 300 tasks of 40 ms on 2 CPUs: about 6 s of work, all queued at once.
    let flood = submit(&mut big, &module, "default_sum", "[300, 40]", "").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The small tenant's 4 tasks go first as CPUs free up: its job ends
    // while the flood is still running (first in, first out would make
    // it wait for all 300).
    let sum = run(&mut small, &module, "default_sum", "[4, 40]", "").await;
    assert_eq!(sum, 6);
    let state = big.job(&flood).await.unwrap().state;
    assert_eq!(state, JobState::Running as i32, "the flood had ended first");
    let total = big.result(&flood, true).await.unwrap().value_json;
    assert_eq!(total, (0..300).sum::<u64>().to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_manages_tenants_namespaces_tokens_and_policies() {
    let dir = tempfile::tempdir().unwrap();
    let files = init(&dir.path().join("state"));
    let head = head(&files);
    let admin = admin_token(&files);
    let ok = |args: &[&str], token: &str| {
        let (code, out, err) = prism_cli(&head, &files, token, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        out
    };
    assert!(
        ok(
            &["tenant", "create", "acme", "--cpus", "2", "--jobs", "3"],
            &admin
        )
        .starts_with("acme\tweight 1")
    );
    let ml = ok(
        &[
            "namespace",
            "create",
            "ml",
            "--tenant",
            "acme",
            "--max-task-memory",
            "1073741824",
        ],
        &admin,
    );
    assert!(ml.starts_with("acme/ml\t"), "{ml}");
    let bob = ok(
        &[
            "token",
            "issue",
            "--tenant",
            "acme",
            "--subject",
            "bob",
            "--role",
            "tenant-admin",
            "--ttl",
            "7d",
        ],
        &admin,
    );

    // Policies: checked offline, set and read back by the tenant-admin.
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/examples/gpu-ml-only.cedar"
    );
    assert!(ok(&["policy", "check", example], &bob).ends_with("valid"));
    let bad = dir.path().join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action, resource) when { principal.age > 3 };",
    )
    .unwrap();
    let (code, _, err) = prism_cli(
        &head,
        &files,
        &bob,
        &["policy", "check", bad.to_str().unwrap()],
    );
    assert_eq!(code, 2);
    assert!(err.contains("age"), "{err}");
    ok(&["policy", "set", example], &bob);
    assert_eq!(
        ok(&["policy", "get"], &bob),
        std::fs::read_to_string(example).unwrap().trim()
    );

    // The tenant-admin issues a developer token; the developer runs a job.
    let ada = ok(&["token", "issue", "--subject", "ada"], &bob);
    let wasm = dir.path().join("hello.wasm");
    std::fs::write(&wasm, prism_guests::HELLO).unwrap();
    let out = ok(
        &[
            "job",
            "submit",
            wasm.to_str().unwrap(),
            "--args",
            r#"["Ada"]"#,
            "--namespace",
            "ml",
            "--wait",
        ],
        &ada,
    );
    assert!(out.contains("Hello, Ada"), "{out}");
    assert!(ok(&["job", "list"], &ada).contains("namespace=ml by=ada"));

    // The cluster-admin revokes it; the audit log says who did.
    assert!(ok(&["token", "revoke", &ada], &admin).starts_with("revoked token "));
    let (code, _, err) = prism_cli(&head, &files, &ada, &["job", "list"]);
    assert_eq!(
        (code, err.as_str()),
        (2, "error: unauthenticated: token revoked")
    );
    let audit = std::fs::read_to_string(files.dir().join("audit.log")).unwrap();
    let revoked: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .rfind(|l| l["action"] == "RevokeToken")
        .unwrap();
    assert_eq!(revoked["subject"], "admin", "{revoked}");

    // Quotas are the cluster-admin's; a tenant-admin is refused.
    let (code, _, err) = prism_cli(
        &head,
        &files,
        &bob,
        &["tenant", "quotas", "acme", "--jobs", "9"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("permission denied"), "{err}");
    ok(&["tenant", "delete", "acme"], &admin);
    assert_eq!(ok(&["tenant", "list"], &admin).lines().count(), 1);
    // Offline signing checks the tenant's name.
    let (code, _, err) = prism_cli(
        &head,
        &files,
        &admin,
        &[
            "token",
            "issue",
            "--dir",
            files.dir().to_str().unwrap(),
            "--tenant",
            "No/pe",
            "--subject",
            "x",
        ],
    );
    assert_eq!(code, 2, "{err}");
}
