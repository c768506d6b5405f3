//! The `prism_v1` calls that reach beyond the guest's own tasks and
//! objects: actors (create, call, look up, kill, exit), named objects and
//! placement groups. Every call that may wait lends the guest's CPU.

use super::{decode_args, read, read_actor_id, read_str, stage, violation, write};
use crate::objects::named::Tier;
use crate::runtime::lending;
use crate::runtime::{ActorCreateError, TaskState};
use bytes::Bytes;
use prism_abi::{OBJECT_ID_LEN, status};
use wasmtime::{Caller, Linker};

/// Adds the actor, named-object and placement-group calls to `linker`.
pub(super) fn add_cluster_calls(linker: &mut Linker<TaskState>) -> anyhow::Result<()> {
    let m = prism_abi::IMPORT_MODULE;
    linker.func_wrap_async(
        m,
        "actor_create",
        |mut caller: Caller<'_, TaskState>,
         (class_ptr, class_len, args_ptr, args_len, opts_ptr, opts_len, out_id): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let class = read_str("actor_create", &caller, class_ptr, class_len)?;
                let args = read("actor_create", &caller, args_ptr, args_len)?;
                let opts = read("actor_create", &caller, opts_ptr, opts_len)?;
                write(
                    "actor_create",
                    &mut caller,
                    out_id,
                    &[0u8; prism_abi::ACTOR_ID_LEN],
                )?;
                let (Some(class), Some(args), Ok(options)) = (
                    class,
                    decode_args(&args),
                    prism_abi::ActorOptions::decode(&opts),
                ) else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                let too_long = |name: &Option<String>| {
                    name.as_ref()
                        .is_some_and(|n| n.len() > prism_abi::MAX_NAME_LEN)
                };
                if too_long(&options.name) || too_long(&options.namespace) {
                    return Ok(status::INVALID_ARGUMENT);
                }
                let host = caller.data().host.clone();
                let created = lending(&host, || host.actor_create(&class, args, options)).await;
                match created {
                    Ok(id) => {
                        write("actor_create", &mut caller, out_id, id.as_bytes())?;
                        Ok(status::OK)
                    }
                    Err(ActorCreateError::NameTaken(_)) => Ok(status::NAME_TAKEN),
                    Err(ActorCreateError::Invalid(_)) => Ok(status::INVALID_ARGUMENT),
                    Err(ActorCreateError::Denied(_)) => Ok(status::PERMISSION_DENIED),
                    Err(ActorCreateError::Quota(_)) => Ok(status::QUOTA_EXCEEDED),
                }
            })
        },
    )?;

    linker.func_wrap(
        m,
        "actor_call",
        |mut caller: Caller<'_, TaskState>,
         id_ptr: i32,
         method_ptr: i32,
         method_len: i32,
         args_ptr: i32,
         args_len: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            let actor = read_actor_id("actor_call", &caller, id_ptr)?;
            let method = read_str("actor_call", &caller, method_ptr, method_len)?;
            let args = read("actor_call", &caller, args_ptr, args_len)?;
            write("actor_call", &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let (Some(method), Some(args)) = (method, decode_args(&args)) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            let id = caller.data().host.actor_call(actor, &method, args);
            write("actor_call", &mut caller, out_id, id.as_bytes())?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "serve_call",
        |mut caller: Caller<'_, TaskState>,
         app_ptr: i32,
         app_len: i32,
         deployment_ptr: i32,
         deployment_len: i32,
         request_ptr: i32,
         request_len: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            let app = read_str("serve_call", &caller, app_ptr, app_len)?;
            let deployment = read_str("serve_call", &caller, deployment_ptr, deployment_len)?;
            let request = read("serve_call", &caller, request_ptr, request_len)?;
            write("serve_call", &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let (Some(app), Some(deployment)) = (app, deployment) else {
                return Ok(status::INVALID_ARGUMENT);
            };
            let call = crate::cluster::DeploymentCall::Request(Bytes::from(request));
            let id = caller.data().host.serve_call(&app, &deployment, call);
            write("serve_call", &mut caller, out_id, id.as_bytes())?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "serve_call_method",
        |mut caller: Caller<'_, TaskState>,
         app_ptr: i32,
         app_len: i32,
         deployment_ptr: i32,
         deployment_len: i32,
         method_ptr: i32,
         method_len: i32,
         args_ptr: i32,
         args_len: i32,
         out_id: i32|
         -> anyhow::Result<i32> {
            let call = "serve_call_method";
            let app = read_str(call, &caller, app_ptr, app_len)?;
            let deployment = read_str(call, &caller, deployment_ptr, deployment_len)?;
            let method = read_str(call, &caller, method_ptr, method_len)?;
            let args = read(call, &caller, args_ptr, args_len)?;
            write(call, &mut caller, out_id, &[0u8; OBJECT_ID_LEN])?;
            let (Some(app), Some(deployment), Some(method), Some(args)) =
                (app, deployment, method, decode_args(&args))
            else {
                return Ok(status::INVALID_ARGUMENT);
            };
            // Values only: a deployment's replica lives outside the
            // caller's job and cannot borrow its objects.
            let mut values = Vec::with_capacity(args.len());
            for arg in args {
                match arg {
                    crate::task::Arg::Value(bytes) => values.push(bytes),
                    _ => return Ok(status::INVALID_ARGUMENT),
                }
            }
            let call_of = crate::cluster::DeploymentCall::Method {
                method,
                args: values,
            };
            let id = caller.data().host.serve_call(&app, &deployment, call_of);
            write(call, &mut caller, out_id, id.as_bytes())?;
            Ok(status::OK)
        },
    )?;

    linker.func_wrap_async(
        m,
        "actor_lookup",
        |mut caller: Caller<'_, TaskState>,
         (ns_ptr, ns_len, name_ptr, name_len, class_ptr, class_len, out_id): (
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
            i32,
        )| {
            Box::new(async move {
                let namespace = read_str("actor_lookup", &caller, ns_ptr, ns_len)?;
                let name = read_str("actor_lookup", &caller, name_ptr, name_len)?;
                let class = read_str("actor_lookup", &caller, class_ptr, class_len)?;
                write(
                    "actor_lookup",
                    &mut caller,
                    out_id,
                    &[0u8; prism_abi::ACTOR_ID_LEN],
                )?;
                let (Some(namespace), Some(name), Some(class)) = (namespace, name, class) else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                let host = caller.data().host.clone();
                let found = lending(&host, || host.actor_lookup(&namespace, &name, &class)).await;
                match found {
                    Some(id) => {
                        write("actor_lookup", &mut caller, out_id, id.as_bytes())?;
                        Ok(status::OK)
                    }
                    None => Ok(status::NOT_FOUND),
                }
            })
        },
    )?;

    linker.func_wrap(
        m,
        "actor_kill",
        |caller: Caller<'_, TaskState>, id_ptr: i32| -> anyhow::Result<i32> {
            let actor = read_actor_id("actor_kill", &caller, id_ptr)?;
            caller.data().host.actor_kill(actor);
            Ok(status::OK)
        },
    )?;

    linker.func_wrap(
        m,
        "actor_exit",
        |mut caller: Caller<'_, TaskState>| -> i32 {
            let state = caller.data_mut();
            if !state.actor {
                return status::NOT_AN_ACTOR;
            }
            state.exit_requested = true;
            status::OK
        },
    )?;

    linker.func_wrap_async(
        m,
        "named_put",
        |caller: Caller<'_, TaskState>,
         (name_ptr, name_len, ptr, len, tier): (i32, i32, i32, i32, i32)| {
            Box::new(async move {
                let name = read_str("named_put", &caller, name_ptr, name_len)?;
                let value = read("named_put", &caller, ptr, len)?;
                let tier = match tier {
                    prism_abi::tier::MEMORY => Tier::Memory,
                    prism_abi::tier::DURABLE => Tier::Durable,
                    _ => return Ok(status::INVALID_ARGUMENT),
                };
                let Some(name) = name else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                if !caller.data().host.permissions().put_object {
                    return Ok(status::PERMISSION_DENIED);
                }
                let host = caller.data().host.clone();
                lending(&host, || host.named_put(&name, Bytes::from(value), tier))
                    .await
                    .map_err(|e| violation("named_put", e.to_string()))?;
                Ok(status::OK)
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "pg_create",
        |mut caller: Caller<'_, TaskState>, (spec_ptr, spec_len, out_len): (i32, i32, i32)| {
            Box::new(async move {
                let spec = read("pg_create", &caller, spec_ptr, spec_len)?;
                write("pg_create", &mut caller, out_len, &[0u8; 4])?;
                let Ok(spec) = rmp_serde::from_slice::<prism_abi::PlacementGroupSpec>(&spec) else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                let host = caller.data().host.clone();
                let created = lending(&host, || host.pg_create(spec)).await;
                let (code, staged) = match created {
                    Ok(info) => match rmp_serde::to_vec_named(&info) {
                        Ok(bytes) => (status::OK, bytes),
                        Err(e) => return Err(violation("pg_create", e.to_string())),
                    },
                    Err(error) => (status::ERROR_OBJECT, error.encode()),
                };
                stage("pg_create", &mut caller, out_len, Bytes::from(staged))?;
                Ok(code)
            })
        },
    )?;

    linker.func_wrap(
        m,
        "pg_remove",
        |caller: Caller<'_, TaskState>, id_ptr: i32, id_len: i32| -> anyhow::Result<i32> {
            let Some(group) = read_str("pg_remove", &caller, id_ptr, id_len)? else {
                return Ok(status::INVALID_ARGUMENT);
            };
            caller.data().host.pg_remove(&group);
            Ok(status::OK)
        },
    )?;

    linker.func_wrap_async(
        m,
        "named_get",
        |mut caller: Caller<'_, TaskState>, (name_ptr, name_len, out_len): (i32, i32, i32)| {
            Box::new(async move {
                let name = read_str("named_get", &caller, name_ptr, name_len)?;
                write("named_get", &mut caller, out_len, &[0u8; 4])?;
                let Some(name) = name else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                if !caller.data().host.permissions().get_object {
                    return Ok(status::PERMISSION_DENIED);
                }
                let host = caller.data().host.clone();
                let get = lending(&host, || host.named_get(&name));
                match get
                    .await
                    .map_err(|e| violation("named_get", e.to_string()))?
                {
                    Some(value) => {
                        stage("named_get", &mut caller, out_len, value)?;
                        Ok(status::OK)
                    }
                    None => Ok(status::NOT_FOUND),
                }
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "named_delete",
        |caller: Caller<'_, TaskState>, (name_ptr, name_len): (i32, i32)| {
            Box::new(async move {
                let Some(name) = read_str("named_delete", &caller, name_ptr, name_len)? else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                if !caller.data().host.permissions().put_object {
                    return Ok(status::PERMISSION_DENIED);
                }
                let host = caller.data().host.clone();
                let delete = lending(&host, || host.named_delete(&name));
                let existed = delete
                    .await
                    .map_err(|e| violation("named_delete", e.to_string()))?;
                Ok(if existed {
                    status::OK
                } else {
                    status::NOT_FOUND
                })
            })
        },
    )?;

    linker.func_wrap_async(
        m,
        "named_list",
        |mut caller: Caller<'_, TaskState>, (prefix_ptr, prefix_len, out_len): (i32, i32, i32)| {
            Box::new(async move {
                let prefix = read_str("named_list", &caller, prefix_ptr, prefix_len)?;
                write("named_list", &mut caller, out_len, &[0u8; 4])?;
                let Some(prefix) = prefix else {
                    return Ok(status::INVALID_ARGUMENT);
                };
                if !caller.data().host.permissions().get_object {
                    return Ok(status::PERMISSION_DENIED);
                }
                let host = caller.data().host.clone();
                let list = lending(&host, || host.named_list(&prefix));
                let names = list
                    .await
                    .map_err(|e| violation("named_list", e.to_string()))?;
                let encoded = prism_abi::encode_value(&names)
                    .map_err(|e| violation("named_list", e.to_string()))?;
                stage("named_list", &mut caller, out_len, Bytes::from(encoded))?;
                Ok(status::OK)
            })
        },
    )?;
    Ok(())
}
