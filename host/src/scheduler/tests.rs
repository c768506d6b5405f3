//! The scheduler's unit tests: a gate executor that records what starts
//! and lets attempts finish on demand.

use super::*;
use crate::objects::Lookup;
use crate::security::{GuestPermissions, JobGrant, Quotas};

/// What the test sees of the executor: which functions started, in
/// order, and a permit per attempt it lets finish.
struct GateState {
    started: Mutex<Vec<String>>,
    finish: tokio::sync::Semaphore,
}

/// Runs no guest: records the start, then waits for a permit.
struct Gate(Arc<GateState>);

impl TaskExecutor for Gate {
    fn execute(&self, run: TaskRun) -> BoxFuture<'static, Result<Bytes, WireError>> {
        let state = self.0.clone();
        state
            .started
            .lock()
            .unwrap()
            .push(run.spec.function.clone());
        // A "nest…" task waits on others, as a guest in `get` does.
        if run.spec.function.starts_with("nest") {
            run.slot.block();
        }
        Box::pin(async move {
            if let Ok(permit) = state.finish.acquire().await {
                permit.forget();
            }
            Ok(Bytes::from_static(&[0xc0]))
        })
    }
}

fn spec(account: &Arc<JobAccount>, function: &str) -> TaskSpec {
    TaskSpec {
        owner: OwnerId::random(),
        ticket: None,
        module: ModuleHash::of(b"m"),
        entry: EntryKind::Task,
        function: function.into(),
        args: Vec::new(),
        request: ResourceSet::new(1.0, 0, &Default::default()).unwrap(),
        max_retries: 0,
        max_calls: 0,
        timeout: Duration::from_secs(10),
        memory_limit: 1 << 20,
        return_id: ObjectId::random(),
        strategy: Default::default(),
        local_only: true,
        from_peer: false,
        recorded_as: None,
        bundle: None,
        first_attempt: 0,
        account: Some(account.clone()),
        admitted: false,
    }
}

fn grant(tenant: &str, quotas: Quotas) -> JobGrant {
    JobGrant {
        tenant: crate::security::tenants::TenantId::new(tenant),
        weight: 1.0,
        quotas,
        capabilities: None,
        permissions: GuestPermissions::ALL,
        namespaces: Default::default(),
        quota_revision: 0,
    }
}

struct Setup {
    gate: Arc<GateState>,
    scheduler: Scheduler,
    objects: Arc<ObjectStore>,
    accounts: accounts::Accounts,
    _executor: Arc<dyn TaskExecutor>,
    _dir: tempfile::TempDir,
}

fn setup(cpus: f64) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let objects = Arc::new(ObjectStore::new(1 << 20, dir.path().join("spill")).unwrap());
    let gate = Arc::new(GateState {
        started: Mutex::new(Vec::new()),
        finish: tokio::sync::Semaphore::new(0),
    });
    let executor: Arc<dyn TaskExecutor> = Arc::new(Gate(gate.clone()));
    let total = ResourceSet::new(cpus, 0, &Default::default()).unwrap();
    Setup {
        scheduler: Scheduler::new(
            total,
            objects.clone(),
            Arc::downgrade(&executor),
            None,
            Duration::from_millis(1),
        ),
        gate,
        objects,
        accounts: Default::default(),
        _executor: executor,
        _dir: dir,
    }
}

impl Setup {
    /// A job account of tenant `capped`, whose quota is one CPU.
    fn capped(&self) -> Arc<JobAccount> {
        self.accounts.open_job(&grant(
            "capped",
            Quotas {
                cpus: Some(1.0),
                ..Default::default()
            },
        ))
    }

    /// Submits a one-CPU task `function` of `account`; its result id.
    fn submit(&self, account: &Arc<JobAccount>, function: &str) -> ObjectId {
        let spec = spec(account, function);
        let id = spec.return_id;
        self.scheduler.submit(spec);
        id
    }
}

async fn done(objects: &ObjectStore, id: ObjectId) {
    if let Watch::Pending(rx) = objects.watch(id) {
        let _ = rx.await;
    }
}

#[tokio::test]
async fn tenants_take_turns_on_a_busy_node() {
    let s = setup(1.0);
    let a = s.accounts.open_job(&grant("a", Quotas::default()));
    let b = s.accounts.open_job(&grant("b", Quotas::default()));
    let mut ids: Vec<ObjectId> = ["a0", "a1", "a2", "a3"]
        .iter()
        .map(|f| s.submit(&a, f))
        .collect();
    ids.extend(["b0", "b1"].iter().map(|f| s.submit(&b, f)));
    for _ in 0..ids.len() {
        s.gate.finish.add_permits(1);
        tokio::task::yield_now().await;
    }
    for id in ids {
        done(&s.objects, id).await;
    }
    // a0 ran alone; then, with equal shares, the tenant served longest
    // ago goes next: first in, first out would run all of a first.
    assert_eq!(
        *s.gate.started.lock().unwrap(),
        ["a0", "b0", "a1", "b1", "a2", "a3"]
    );
}

#[tokio::test]
async fn a_tenant_at_its_cpu_quota_waits_while_others_run() {
    let s = setup(3.0);
    let capped = s.capped();
    let free = s.accounts.open_job(&grant("free", Quotas::default()));
    let mut ids: Vec<ObjectId> = ["c0", "c1", "c2"]
        .iter()
        .map(|f| s.submit(&capped, f))
        .collect();
    ids.push(s.submit(&free, "f0"));
    tokio::task::yield_now().await;
    // One CPU for the capped tenant, one for the other; one idle.
    assert_eq!(*s.gate.started.lock().unwrap(), ["c0", "f0"]);
    // A request over the quota by itself fails at once.
    let mut big = spec(&capped, "too-big");
    big.request = ResourceSet::new(2.0, 0, &Default::default()).unwrap();
    let big_id = big.return_id;
    s.scheduler.submit(big);
    match s.objects.lookup(big_id).unwrap() {
        Lookup::Ready(Object::Error(e)) => {
            assert_eq!(e.kind, ErrorKind::QuotaExceeded, "{e:?}");
            assert!(e.message.contains("tenant capped"), "{}", e.message);
        }
        other => panic!(
            "expected an error, got {:?}",
            matches!(other, Lookup::Ready(_))
        ),
    }
    s.gate.finish.add_permits(10);
    for id in ids {
        done(&s.objects, id).await;
    }
    assert_eq!(s.gate.started.lock().unwrap().len(), 4);
    assert_eq!(capped.tenant().weighted_share(&s.scheduler.total()), 0.0);
}

#[tokio::test]
async fn an_actor_blocked_in_get_lends_its_cpu_to_its_tenant_too() {
    let s = setup(2.0);
    let capped = s.capped();
    let tenant = capped.tenant().clone();
    let one = ResourceSet::new(1.0, 0, &Default::default()).unwrap();
    // The actor's charge, taken when it was admitted.
    tenant.admit_hold(&one).unwrap();
    let lease = s.scheduler.lease(one.clone(), Some(tenant.clone())).await;
    // It waits on a task of its own tenant, which may then run.
    lease.slot().block();
    let id = s.submit(&capped, "child");
    tokio::task::yield_now().await;
    assert_eq!(*s.gate.started.lock().unwrap(), ["child"]);
    s.gate.finish.add_permits(1);
    done(&s.objects, id).await;
    // Ending while blocked leaves the charge whole for the actor's
    // own release.
    drop(lease);
    assert_eq!(tenant.usage().cpu_milli, 1000);
    tenant.unhold(&one);
    assert_eq!(tenant.usage().cpu_milli, 0);
}

#[tokio::test]
async fn a_blocked_task_does_not_count_against_its_tenants_cpu_quota() {
    let s = setup(2.0);
    let capped = s.capped();
    let ids = [s.submit(&capped, "nest-parent"), s.submit(&capped, "child")];
    tokio::task::yield_now().await;
    // The parent waits for the child (as a guest blocked in `get`):
    // its CPU is lent out, within the tenant's quota too, or a nested
    // graph would stall at the quota.
    assert_eq!(*s.gate.started.lock().unwrap(), ["nest-parent", "child"]);
    s.gate.finish.add_permits(2);
    for id in ids {
        done(&s.objects, id).await;
    }
    assert_eq!(capped.tenant().usage().cpu_milli, 0);
}

#[tokio::test]
async fn one_tenants_blocked_graph_cannot_take_every_instance_slot() {
    let s = setup(2.0);
    // Four slots, of which one tenant may hold three.
    s.scheduler.limit_instances(4, 0.75);
    let bomb = s.accounts.open_job(&grant("bomb", Quotas::default()));
    let good = s.accounts.open_job(&grant("good", Quotas::default()));
    let mut ids: Vec<ObjectId> = (0..6)
        .map(|i| s.submit(&bomb, &format!("nest-{i}")))
        .collect();
    tokio::task::yield_now().await;
    // Three parents started and blocked (lending their CPUs); the rest
    // wait in the queue holding nothing.
    assert_eq!(s.gate.started.lock().unwrap().len(), 3);
    assert_eq!(s.scheduler.instances(), (3, 4, 3));
    assert_eq!(s.scheduler.available().cpu_milli, 2000);
    // The other tenant still gets the fourth slot.
    ids.push(s.submit(&good, "good"));
    tokio::task::yield_now().await;
    assert_eq!(s.gate.started.lock().unwrap().last().unwrap(), "good");
    assert_eq!(s.scheduler.instances(), (4, 4, 3));
    assert_eq!(s.scheduler.available().cpu_milli, 1000);
    s.gate.finish.add_permits(100);
    for id in ids {
        done(&s.objects, id).await;
    }
    assert_eq!(s.gate.started.lock().unwrap().len(), 7);
    assert_eq!(s.scheduler.instances(), (0, 4, 3));
    assert_eq!(bomb.tenant().instances(), 0);
    assert_eq!(good.tenant().instances(), 0);
}

#[tokio::test]
async fn actors_take_instance_slots_and_give_them_back() {
    let s = setup(2.0);
    s.scheduler.limit_instances(2, 0.5);
    let a = s.accounts.open_job(&grant("a", Quotas::default()));
    let b = s.accounts.open_job(&grant("b", Quotas::default()));
    let none = ResourceSet::default();
    let first = s
        .scheduler
        .lease(none.clone(), Some(a.tenant().clone()))
        .await;
    // Tenant a is at its share: its next actor waits, b's does not.
    let scheduler = s.scheduler.clone();
    let (ta, none2) = (a.tenant().clone(), none.clone());
    let mut second = tokio::spawn(async move { scheduler.lease(none2, Some(ta)).await });
    tokio::task::yield_now().await;
    assert!(!second.is_finished());
    let other = s
        .scheduler
        .lease(none.clone(), Some(b.tenant().clone()))
        .await;
    assert_eq!(s.scheduler.instances(), (2, 2, 1));
    drop(first);
    let second = (&mut second).await.unwrap();
    assert_eq!(a.tenant().instances(), 1);
    drop(second);
    drop(other);
    assert_eq!(s.scheduler.instances(), (0, 2, 1));
}

#[tokio::test]
async fn guests_without_a_cpu_take_one_per_turn_fairly_and_within_quota() {
    let s = setup(2.0);
    let capped = s.capped();
    let other = s.accounts.open_job(&grant("other", Quotas::default()));
    let none = ResourceSet::default();
    let lease = |account: &Arc<JobAccount>| {
        s.scheduler
            .lease(none.clone(), Some(account.tenant().clone()))
    };
    let (a1, a2) = (lease(&capped).await, lease(&capped).await);
    let t1 = s
        .scheduler
        .turn(a1.slot(), OwnerId::random(), Some(capped.clone()))
        .await;
    assert_eq!(s.scheduler.available().cpu_milli, 1000);
    assert_eq!(capped.tenant().usage().cpu_milli, 1000);
    // The capped tenant's second actor waits for its quota, though a
    // CPU is free; the other tenant's task takes that CPU.
    let scheduler = s.scheduler.clone();
    let (slot2, capped2) = (a2.slot().clone(), capped.clone());
    let mut t2 = tokio::spawn(async move {
        scheduler
            .turn(&slot2, OwnerId::random(), Some(capped2))
            .await
    });
    tokio::task::yield_now().await;
    assert!(!t2.is_finished());
    let task = s.submit(&other, "other");
    tokio::task::yield_now().await;
    assert_eq!(*s.gate.started.lock().unwrap(), ["other"]);
    assert_eq!(s.scheduler.available().cpu_milli, 0);
    // Blocking in a call lends the turn's CPU, within the quota too:
    // the second actor's turn comes.
    a1.slot().block();
    let t2 = (&mut t2).await.unwrap();
    assert_eq!(capped.tenant().usage().cpu_milli, 1000);
    // Resuming takes the CPU back at once (in debt, as any resume).
    a1.slot().unblock().await;
    assert_eq!(capped.tenant().usage().cpu_milli, 2000);
    drop(t1);
    drop(t2);
    s.gate.finish.add_permits(1);
    done(&s.objects, task).await;
    assert_eq!(s.scheduler.available().cpu_milli, 2000);
    assert_eq!(capped.tenant().usage().cpu_milli, 0);
    // A turn given up while it waits leaves nothing behind.
    let t3 = s
        .scheduler
        .turn(a1.slot(), OwnerId::random(), Some(capped.clone()))
        .await;
    let waiting = tokio::time::timeout(
        Duration::from_millis(20),
        s.scheduler
            .turn(a2.slot(), OwnerId::random(), Some(capped.clone())),
    )
    .await;
    assert!(waiting.is_err());
    drop(t3);
    assert_eq!(s.scheduler.available().cpu_milli, 2000);
    assert_eq!(capped.tenant().usage().cpu_milli, 0);
}

#[tokio::test]
async fn a_task_or_driver_that_asked_for_no_cpu_runs_on_one() {
    let s = setup(2.0);
    let a = s.accounts.open_job(&grant("a", Quotas::default()));
    let mut task = spec(&a, "zero");
    task.request = ResourceSet::default();
    let mut driver = spec(&a, "driver");
    driver.request = ResourceSet::default();
    driver.entry = EntryKind::Main;
    let ids = [task.return_id, driver.return_id];
    s.scheduler.submit(task);
    s.scheduler.submit(driver);
    tokio::task::yield_now().await;
    assert_eq!(s.gate.started.lock().unwrap().len(), 2);
    assert_eq!(s.scheduler.available().cpu_milli, 0);
    s.gate.finish.add_permits(2);
    for id in ids {
        done(&s.objects, id).await;
    }
    assert_eq!(s.scheduler.available().cpu_milli, 2000);
}
