//! Drivers for the multi-tenant tests (`tests/e2e/tenancy.rs`): what a
//! hostile guest tries against another tenant and against its own
//! sandbox, and what a well-behaved one does meanwhile. Each reports what
//! it observed; the tests assert on the report.

use prism::{Bundle, ObjectRef, PlacementGroup, PlacementStrategy};
use std::time::Duration;

use crate::{Kit, KitHandle, add, kind, sleep_then, spin};

/// Reads a file: "ok:<text>" or "err:<message>".
#[prism::main]
fn read_file(path: String) -> String {
    match std::fs::read_to_string(&path) {
        Ok(text) => format!("ok:{text}"),
        Err(e) => format!("err:{e}"),
    }
}

/// Tries to create and write a file: "ok" or "err:<message>".
#[prism::main]
fn write_file(path: String, text: String) -> String {
    match std::fs::write(&path, text) {
        Ok(()) => "ok".into(),
        Err(e) => format!("err:{e}"),
    }
}

/// The largest remainder, in nanoseconds, of 50 wall-clock readings
/// modulo one millisecond: 0 when the clock is coarsened to 1 ms.
#[prism::main]
fn clock_probe() -> u64 {
    (0..50)
        .map(|_| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            (now.as_nanos() % 1_000_000) as u64
        })
        .max()
        .unwrap_or(0)
}

/// Keeps a secret the way a tenant would: an object, a named detached
/// actor, a named object and a placement group. Prints the handles (as a
/// thief might learn them), waits `ms` for the thief to try, then checks
/// that nothing was taken or broken: (object, actor value, named object,
/// a task in the group's bundle).
#[prism::main]
fn hide_secret(secret: String, ms: u64) -> prism::Result<(String, i64, String, u64)> {
    let object = prism::put(&secret)?;
    let vault = Kit::options().name("vault").detached().remote(42)?;
    prism::put_named("secret", &secret)?;
    let group = prism::placement_group(&[Bundle::new().cpus(1.0)], PlacementStrategy::Pack)?;
    prism::log(format!("object {:?}", object.id().0));
    prism::log(format!(
        "actor {:?}",
        prism::ActorHandle::actor_id(&vault).0
    ));
    prism::log(format!("group {} {}", group.id(), group.nodes().join(",")));
    std::thread::sleep(Duration::from_millis(ms));
    let in_bundle = prism::get(&add::options().placement_group(&group, 0).remote(1, 2))?;
    Ok((
        prism::get(&object)?,
        prism::get(&vault.get().remote())?,
        prism::get_named("secret")?,
        in_bundle,
    ))
}

/// Everything a hostile guest of another tenant tries with the handles
/// `hide_secret` printed (and with names it guesses). Returns the kind
/// of each outcome, in order: get the object, call the actor, look the
/// actor up by name (own namespace, then naming the victim's, then a
/// name nobody has, for comparison), read the named object, run a task in
/// the victim's placement group bundle, get an object id made up from
/// nothing, pass the object to a task, create an actor in a namespace that
/// does not exist.
#[prism::main]
fn steal(
    object: ObjectRef<String>,
    actor: KitHandle,
    group: PlacementGroup,
) -> prism::Result<Vec<String>> {
    let mut seen = Vec::new();
    seen.push(kind(&prism::get(&object)));
    seen.push(kind(&prism::get(&actor.add(1).remote())));
    // Killing it must do nothing (the victim checks it still answers).
    let _ = prism::kill(&actor);
    seen.push(kind(&prism::get_actor::<Kit>("vault")));
    seen.push(kind(&prism::get_actor_in::<Kit>("default", "vault")));
    seen.push(kind(&prism::get_actor::<Kit>("no-such-actor")));
    seen.push(kind(&prism::get_named::<String>("secret")));
    seen.push(kind(&prism::get(
        &add::options().placement_group(&group, 0).remote(1, 2),
    )));
    let _ = group.remove();
    let mut forged = object.id();
    forged.0[15] ^= 0x5a;
    seen.push(kind(&prism::get(&ObjectRef::<String>::from_id(forged))));
    // Handing the object to a task (the host resolves it) finds nothing
    // either; nor can an actor be put in a namespace that does not exist.
    seen.push(kind(&prism::get(&text_length::remote(object))));
    seen.push(kind(&Kit::options().namespace("nowhere").remote(1)));
    // Nor can it free the object (the victim reads it afterwards).
    seen.push(format!(
        "freed {}",
        prism::free(&[object, forged_ref(forged)])?
    ));
    Ok(seen)
}

fn forged_ref(id: prism::ObjectId) -> ObjectRef<String> {
    ObjectRef::from_id(id)
}

/// The length of a text.
#[prism::task]
pub(crate) fn text_length(text: String) -> u64 {
    text.len() as u64
}

/// Grows linear memory until something stops it.
#[prism::task]
fn eat_memory() -> u64 {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![7u8; 4 << 20]);
        if hoard.len() == usize::MAX {
            return hoard.len() as u64;
        }
    }
}

/// A guest that exhausts what it may: memory, time, GPUs it was not
/// granted, and its tenant's quotas. Returns the kind of each outcome:
/// the memory bomb, the endless loop, a GPU task, then how many of
/// `tasks` queued submissions, `puts` puts of `kb` KiB and `actors`
/// actors were admitted, each with the kind of the first refusal, then an
/// actor and a placement group holding 3 CPUs, and a group of 2 CPUs
/// after one of 1 CPU was removed.
#[prism::main]
fn exhaust(tasks: u64, puts: u64, kb: u64, actors: u64) -> prism::Result<Vec<String>> {
    let mut seen = vec![
        kind(&prism::get(&eat_memory::options().max_retries(0).remote())),
        kind(&prism::get(&spin::options().max_retries(0).remote())),
        kind(&prism::get(&add::options().num_gpus(1.0).remote(1, 2))),
    ];
    let refs: Vec<_> = (0..tasks).map(|i| sleep_then::remote(300, i)).collect();
    seen.push(admitted(refs.iter().map(|r| prism::get(r).map(|_| ()))));
    let blob = vec![1u8; (kb * 1024) as usize];
    let stored: Vec<_> = (0..puts).map(|_| prism::put(&blob)).collect();
    seen.push(admitted(
        stored
            .iter()
            .map(|r| r.as_ref().map(|_| ()).map_err(Clone::clone)),
    ));
    // Freeing what was stored gives its bytes back to the quota.
    let kept: Vec<_> = stored.into_iter().filter_map(Result::ok).collect();
    let freed = prism::free(&kept)?;
    seen.push(format!("freed {freed}: {}", kind(&prism::put(&blob))));
    seen.push(admitted(
        (0..actors).map(|i| Kit::options().remote(i as i64).map(|_| ())),
    ));
    // What actors and placement groups hold counts against the CPU quota.
    seen.push(kind(&Kit::options().num_cpus(3.0).remote(0)));
    seen.push(kind(&prism::placement_group(
        &[Bundle::new().cpus(3.0)],
        PlacementStrategy::Pack,
    )));
    // A removed group stops counting: one CPU, removed, then two fit.
    let group =
        |cpus: f64| prism::placement_group(&[Bundle::new().cpus(cpus)], PlacementStrategy::Pack);
    let again = group(1.0)
        .and_then(|g| g.remove())
        .and_then(|()| group(2.0));
    seen.push(kind(&again));
    Ok(seen)
}

/// "<how many were ok>:<kind of the first failure, or none>".
fn admitted(outcomes: impl Iterator<Item = prism::Result<()>>) -> String {
    let mut ok = 0;
    let mut first = None;
    for outcome in outcomes {
        match outcome {
            Ok(()) => ok += 1,
            Err(_) if first.is_some() => {}
            failed => first = Some(kind(&failed)),
        }
    }
    format!("{ok}:{}", first.unwrap_or_else(|| "none".into()))
}

/// Creates `n` actors on node `node`, calls each once, keeps them for
/// `ms`, and reports how many were admitted: "<ok>:<first refusal>".
#[prism::main]
fn actors_on(node: String, n: u64, ms: u64) -> String {
    let made: Vec<prism::Result<KitHandle>> = (0..n)
        .map(|i| Kit::options().node(&node, false).remote(i as i64))
        .collect();
    // A refusal on another node shows on the first call.
    let called: Vec<prism::Result<()>> = made
        .iter()
        .map(|h| match h {
            Ok(h) => prism::get(&h.get().remote()).map(|_| ()),
            Err(e) => Err(e.clone()),
        })
        .collect();
    let report = admitted(called.into_iter());
    prism::log(format!("admitted {report}"));
    std::thread::sleep(Duration::from_millis(ms));
    report
}

/// Makes a blob on node `node`, logs its reference, and keeps it for
/// `ms`; returns its length.
#[prism::main]
fn hold_blob_on(node: String, ms: u64) -> prism::Result<u64> {
    let blob = prism::get(&blob_here::options().node(&node, false).remote(4))?;
    prism::log(format!("blob {:?}", blob.id().0));
    std::thread::sleep(Duration::from_millis(ms));
    Ok(prism::get(&blob)?.len() as u64)
}

/// Puts `kb` KiB into the store of the node it runs on.
#[prism::task]
fn blob_here(kb: u64) -> prism::Result<ObjectRef<Vec<u8>>> {
    prism::put(&vec![3u8; (kb * 1024) as usize])
}

/// How getting `object` ends ("ok" or the error's kind).
#[prism::main]
fn peek(object: ObjectRef<Vec<u8>>) -> String {
    kind(&prism::get(&object))
}
