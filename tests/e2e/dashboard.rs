//! The web dashboard (`prism start --head --dashboard-listen`), in a real
//! headless Chromium driven over WebDriver, and over plain HTTPS: a
//! tenant logs in with its token and sees its jobs, a job's task counts,
//! failures by cause with their errors, the timeline and the log; another
//! tenant's job is not found; a forged token is refused; a guest's markup
//! is shown as text and never runs. Screenshots of each step are saved
//! under `target/tmp/dashboard/`.

use crate::procs::{admin_token, client, init, start_head_with};
use crate::serving::member;
use crate::webdriver::Browser;
use prism_client::Client;
use prism_host::security::ClusterFiles;
use prism_host::serve::client::HttpsClient;

async fn run_job(c: &mut Client, entry: &str, args: &str) -> String {
    let hash = c
        .upload_module(prism_guests::TESTKIT.to_vec())
        .await
        .unwrap()
        .hash;
    let job = c.submit(&hash, entry, args, "default").await.unwrap();
    let _ = c.result(&job.id, true).await.unwrap();
    job.id
}

/// The address after `dashboard on https://` in the head's first line.
fn dashboard_address(line: &str) -> String {
    line.split("dashboard on https://")
        .nth(1)
        .map(|rest| rest.split(',').next().unwrap_or(rest).trim().to_string())
        .unwrap_or_else(|| panic!("no dashboard in {line:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_sees_its_jobs_failures_and_timeline_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    let files: ClusterFiles = init(&dir.path().join("state"));
    let head = start_head_with(
        files.dir(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--cpus",
            "2",
            "--no-gpus",
            "--dashboard-listen",
            "127.0.0.1:0",
        ],
    );
    let dashboard = dashboard_address(&head.line);
    let mut admin = client(&head, &files, &admin_token(&files)).await;
    admin.create_tenant("acme", 1.0, "").await.unwrap();
    admin.create_tenant("zeta", 1.0, "").await.unwrap();
    let (mut acme, acme_token) = member(&mut admin, &head, &files, "acme", "developer").await;
    let (mut zeta, zeta_token) = member(&mut admin, &head, &files, "zeta", "developer").await;
    let traced = run_job(&mut acme, "traced_job", "[12, 5]").await;
    let markup = run_job(&mut acme, "traced_markup", "[]").await;
    let foreign = run_job(&mut zeta, "traced_job", "[4, 0]").await;

    // Over plain HTTPS: the JSON API's refusals.
    let ca = std::fs::read(files.ca_cert()).unwrap();
    let mut https = HttpsClient::connect(&dashboard, &ca, false)
        .await
        .expect("the dashboard answers");
    let page = https.get("/", None).await.unwrap();
    assert_eq!(page.status, 200);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let anonymous = https.get("/api/jobs", None).await.unwrap();
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let forged = https.get("/api/jobs", Some("not.a.token")).await.unwrap();
    assert_eq!(forged.status, 401);
    let theirs = https
        .get(&format!("/api/jobs/{foreign}"), Some(&acme_token))
        .await
        .unwrap();
    assert_eq!(theirs.status, 404, "{}", theirs.text());
    let theirs_logs = https
        .get(&format!("/api/jobs/{foreign}/logs"), Some(&acme_token))
        .await
        .unwrap();
    assert_eq!(theirs_logs.status, 404);
    let bad_filter = https
        .get(
            &format!("/api/jobs/{traced}?state=exploded"),
            Some(&acme_token),
        )
        .await
        .unwrap();
    assert_eq!(bad_filter.status, 400, "{}", bad_filter.text());
    let mine = https
        .get(&format!("/api/jobs/{traced}"), Some(&acme_token))
        .await
        .unwrap();
    assert_eq!(mine.status, 200);
    let body: serde_json::Value = serde_json::from_slice(&mine.body).unwrap();
    assert_eq!(body["by_cause"]["panic"], 2);
    let listed = https.get("/api/jobs", Some(&zeta_token)).await.unwrap();
    let listed: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "zeta sees its own job only"
    );

    // In the browser.
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    let browser = Browser::start(&shots).await;
    let base = format!("https://{dashboard}/");
    browser.goto(&base).await;
    browser
        .wait_for(
            "the login form",
            "return !document.getElementById('login-view').hidden",
        )
        .await;
    browser.screenshot("1-login").await;
    browser.type_into("#login-token", "forged.token.here").await;
    browser.click("#login-button").await;
    let refused = browser
        .wait_for(
            "the refusal",
            "return document.getElementById('login-error').textContent",
        )
        .await;
    assert!(
        refused.as_str().unwrap().contains("invalid token"),
        "{refused}"
    );
    assert!(
        browser
            .run("return document.getElementById('jobs-view').hidden")
            .await
            == true
    );

    browser.type_into("#login-token", &acme_token).await;
    browser.click("#login-button").await;
    browser
        .wait_for(
            "acme's jobs",
            "return document.querySelectorAll('#jobs-table tbody tr').length === 2",
        )
        .await;
    let jobs_text = browser.text("#jobs-table").await;
    assert!(jobs_text.contains(&traced) && jobs_text.contains(&markup));
    assert!(!jobs_text.contains(&foreign), "{jobs_text}");
    assert!(browser.text("#who").await.contains("tenant acme"));
    browser.screenshot("2-jobs").await;

    // The traced job's page: counts, causes, the timeline, failures.
    browser.goto(&format!("{base}#/jobs/{traced}")).await;
    browser
        .wait_for(
            "the task counts",
            "const c = document.getElementById('count-failed'); return c && c.textContent",
        )
        .await;
    assert_eq!(browser.text("#count-failed").await, "2 failed");
    assert_eq!(browser.text("#cause-panic").await, "2 × panic");
    assert!(browser.text("#job-state").await.contains("succeeded"));
    let timeline_height = browser
        .run("return document.getElementById('timeline').height")
        .await;
    assert!(timeline_height.as_u64().unwrap() > 40, "{timeline_height}");
    let painted = browser
        .run(
            "const c = document.getElementById('timeline'); \
             const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
             let n = 0; for (let i = 0; i < d.length; i += 4) { \
               if (d[i] === 0x3d && d[i+1] === 0x7d && d[i+2] === 0xd8) n++; } return n",
        )
        .await;
    assert!(painted.as_u64().unwrap() > 100, "no task drawn: {painted}");
    browser.screenshot("3-job").await;
    browser.click("#cause-panic").await;
    browser
        .wait_for(
            "the panics only",
            "const rows = [...document.querySelectorAll('#tasks-table tbody tr')]; \
             return rows.length === 2 && rows.every(r => r.textContent.includes('panic'))",
        )
        .await;
    browser.click("#tasks-table tbody tr").await;
    browser
        .wait_for(
            "the task's detail",
            "return !document.getElementById('task-detail').hidden",
        )
        .await;
    let error = browser.text("#detail-error").await;
    assert!(error.contains("refusing to square"), "{error}");
    let output = browser.text("#detail-output").await;
    assert!(output.contains("squaring "), "{output}");
    browser.screenshot("4-failure").await;

    // A guest's markup is text.
    browser.goto(&format!("{base}#/jobs/{markup}")).await;
    browser
        .wait_for(
            "the markup job's log",
            "return document.getElementById('logs').textContent.includes('onerror')",
        )
        .await;
    browser.click("#tasks-table tbody tr").await;
    let shown = browser.text("#detail-error").await;
    assert!(shown.contains("<b onmouseover="), "{shown}");
    let injected = browser
        .run(
            "return document.title + ' ' + document.querySelectorAll('main img, main script, main b').length",
        )
        .await;
    assert_eq!(injected, "Prism 0");
    browser.screenshot("5-markup-as-text").await;

    // Another tenant's job is not found; the nodes are.
    browser.goto(&format!("{base}#/jobs/{foreign}")).await;
    let missing = browser
        .wait_for(
            "the refusal",
            "return document.getElementById('error').textContent",
        )
        .await;
    assert!(missing.as_str().unwrap().contains("no job"), "{missing}");
    browser.goto(&format!("{base}#/nodes")).await;
    browser
        .wait_for(
            "the head's row",
            "return document.getElementById('nodes-table').textContent.includes('head')",
        )
        .await;
    browser.screenshot("6-nodes").await;
    browser.click("#logout").await;
    browser
        .wait_for(
            "the login form again",
            "return !document.getElementById('login-view').hidden && !sessionStorage.getItem('prism-token')",
        )
        .await;
}
