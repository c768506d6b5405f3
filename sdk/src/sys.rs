//! The raw `prism_v1` imports, and what stands in for them off-wasm.
//!
//! Inside a guest (wasm32) these are the host functions documented in
//! `docs/abi.md`. On any other target the SDK still compiles (so its pure
//! parts can be unit-tested natively), and every host call reports
//! [`NOT_IN_GUEST`]: there is no host to talk to.

/// Status returned by every host call when the SDK is used outside a guest.
pub const NOT_IN_GUEST: i32 = i32::MIN;

#[cfg(target_arch = "wasm32")]
mod imp {
    #[link(wasm_import_module = "prism_v1")]
    unsafe extern "C" {
        pub fn input_read(ptr: *mut u8);
        pub fn output(kind: i32, ptr: *const u8, len: usize);
        pub fn panic_message(ptr: *const u8, len: usize);
        pub fn submit(
            fn_ptr: *const u8,
            fn_len: usize,
            args_ptr: *const u8,
            args_len: usize,
            opts_ptr: *const u8,
            opts_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn put(ptr: *const u8, len: usize, out_id: *mut u8) -> i32;
        pub fn get(id: *const u8, timeout_ms: i64, out_len: *mut u32) -> i32;
        pub fn take(ptr: *mut u8);
        pub fn take_range(ptr: *mut u8, offset: usize, len: usize);
        pub fn put_parts(parts: *const u32, count: usize, out_id: *mut u8) -> i32;
        pub fn wait(
            ids: *const u8,
            count: usize,
            num_returns: usize,
            timeout_ms: i64,
            out_ready: *mut u8,
        ) -> i32;
        pub fn cancel(id: *const u8) -> i32;
        pub fn free(ids: *const u8, count: usize) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: usize);
        pub fn attempt() -> i32;
        pub fn store_stats(out: *mut u8);
        pub fn metric(ptr: *const u8, len: usize) -> i32;
        pub fn actor_create(
            class_ptr: *const u8,
            class_len: usize,
            args_ptr: *const u8,
            args_len: usize,
            opts_ptr: *const u8,
            opts_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn actor_call(
            id: *const u8,
            method_ptr: *const u8,
            method_len: usize,
            args_ptr: *const u8,
            args_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn serve_call(
            app_ptr: *const u8,
            app_len: usize,
            deployment_ptr: *const u8,
            deployment_len: usize,
            request_ptr: *const u8,
            request_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn serve_call_method(
            app_ptr: *const u8,
            app_len: usize,
            deployment_ptr: *const u8,
            deployment_len: usize,
            method_ptr: *const u8,
            method_len: usize,
            args_ptr: *const u8,
            args_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn actor_lookup(
            ns_ptr: *const u8,
            ns_len: usize,
            name_ptr: *const u8,
            name_len: usize,
            class_ptr: *const u8,
            class_len: usize,
            out_id: *mut u8,
        ) -> i32;
        pub fn actor_kill(id: *const u8) -> i32;
        pub fn actor_exit() -> i32;
        pub fn named_put(
            name_ptr: *const u8,
            name_len: usize,
            ptr: *const u8,
            len: usize,
            tier: i32,
        ) -> i32;
        pub fn named_get(name_ptr: *const u8, name_len: usize, out_len: *mut u32) -> i32;
        pub fn named_delete(name_ptr: *const u8, name_len: usize) -> i32;
        pub fn named_list(prefix_ptr: *const u8, prefix_len: usize, out_len: *mut u32) -> i32;
        pub fn pg_create(spec_ptr: *const u8, spec_len: usize, out_len: *mut u32) -> i32;
        pub fn pg_remove(id_ptr: *const u8, id_len: usize) -> i32;
    }
}

#[cfg(target_arch = "wasm32")]
pub fn actor_create(class: &str, args: &[u8], opts: &[u8], out_id: &mut [u8; 16]) -> i32 {
    unsafe {
        imp::actor_create(
            class.as_ptr(),
            class.len(),
            args.as_ptr(),
            args.len(),
            opts.as_ptr(),
            opts.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn serve_call(app: &str, deployment: &str, request: &[u8], out_id: &mut [u8; 16]) -> i32 {
    unsafe {
        imp::serve_call(
            app.as_ptr(),
            app.len(),
            deployment.as_ptr(),
            deployment.len(),
            request.as_ptr(),
            request.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn serve_call_method(
    app: &str,
    deployment: &str,
    method: &str,
    args: &[u8],
    out_id: &mut [u8; 16],
) -> i32 {
    unsafe {
        imp::serve_call_method(
            app.as_ptr(),
            app.len(),
            deployment.as_ptr(),
            deployment.len(),
            method.as_ptr(),
            method.len(),
            args.as_ptr(),
            args.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn actor_call(id: &[u8; 16], method: &str, args: &[u8], out_id: &mut [u8; 16]) -> i32 {
    unsafe {
        imp::actor_call(
            id.as_ptr(),
            method.as_ptr(),
            method.len(),
            args.as_ptr(),
            args.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn actor_lookup(namespace: &str, name: &str, class: &str, out_id: &mut [u8; 16]) -> i32 {
    unsafe {
        imp::actor_lookup(
            namespace.as_ptr(),
            namespace.len(),
            name.as_ptr(),
            name.len(),
            class.as_ptr(),
            class.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn actor_kill(id: &[u8; 16]) -> i32 {
    unsafe { imp::actor_kill(id.as_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn actor_exit() -> i32 {
    unsafe { imp::actor_exit() }
}

#[cfg(target_arch = "wasm32")]
pub fn named_put(name: &str, value: &[u8], tier: i32) -> i32 {
    unsafe { imp::named_put(name.as_ptr(), name.len(), value.as_ptr(), value.len(), tier) }
}

#[cfg(target_arch = "wasm32")]
pub fn named_get(name: &str, out_len: &mut u32) -> i32 {
    unsafe { imp::named_get(name.as_ptr(), name.len(), out_len) }
}

#[cfg(target_arch = "wasm32")]
pub fn named_delete(name: &str) -> i32 {
    unsafe { imp::named_delete(name.as_ptr(), name.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn named_list(prefix: &str, out_len: &mut u32) -> i32 {
    unsafe { imp::named_list(prefix.as_ptr(), prefix.len(), out_len) }
}

#[cfg(target_arch = "wasm32")]
pub fn pg_create(spec: &[u8], out_len: &mut u32) -> i32 {
    unsafe { imp::pg_create(spec.as_ptr(), spec.len(), out_len) }
}

#[cfg(target_arch = "wasm32")]
pub fn pg_remove(id: &str) -> i32 {
    unsafe { imp::pg_remove(id.as_ptr(), id.len()) }
}

#[cfg(target_arch = "wasm32")]
mod imp_gpu {
    #[link(wasm_import_module = "prism_v1")]
    unsafe extern "C" {
        pub fn gpu_device_count() -> i32;
        pub fn gpu_device_info(index: i32, out_len: *mut u32) -> i32;
        pub fn gpu_shader_create(
            device: i32,
            src_ptr: *const u8,
            src_len: usize,
            entry_ptr: *const u8,
            entry_len: usize,
        ) -> i64;
        pub fn gpu_buffer_create(device: i32, size: i64, usage: i32) -> i64;
        pub fn gpu_buffer_write(buffer: i32, offset: i64, ptr: *const u8, len: usize) -> i32;
        pub fn gpu_buffer_read(buffer: i32, offset: i64, ptr: *mut u8, len: usize) -> i32;
        pub fn gpu_dispatch(
            shader: i32,
            bindings_ptr: *const u8,
            bindings_len: usize,
            x: i32,
            y: i32,
            z: i32,
        ) -> i32;
        pub fn gpu_release(handle: i32) -> i32;
        pub fn gpu_last_error(out_len: *mut u32) -> i32;
    }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_device_count() -> i32 {
    unsafe { imp_gpu::gpu_device_count() }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_device_info(index: u32, out_len: &mut u32) -> i32 {
    unsafe { imp_gpu::gpu_device_info(index as i32, out_len) }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_shader_create(device: u32, source: &str, entry: &str) -> i64 {
    unsafe {
        imp_gpu::gpu_shader_create(
            device as i32,
            source.as_ptr(),
            source.len(),
            entry.as_ptr(),
            entry.len(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_buffer_create(device: u32, size: u64, usage: i32) -> i64 {
    unsafe { imp_gpu::gpu_buffer_create(device as i32, size as i64, usage) }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_buffer_write(buffer: u32, offset: u64, bytes: &[u8]) -> i32 {
    unsafe { imp_gpu::gpu_buffer_write(buffer as i32, offset as i64, bytes.as_ptr(), bytes.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_buffer_read(buffer: u32, offset: u64, out: &mut [u8]) -> i32 {
    unsafe { imp_gpu::gpu_buffer_read(buffer as i32, offset as i64, out.as_mut_ptr(), out.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_dispatch(shader: u32, bindings: &[u8], workgroups: [u32; 3]) -> i32 {
    unsafe {
        imp_gpu::gpu_dispatch(
            shader as i32,
            bindings.as_ptr(),
            bindings.len(),
            workgroups[0] as i32,
            workgroups[1] as i32,
            workgroups[2] as i32,
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_release(handle: u32) -> i32 {
    unsafe { imp_gpu::gpu_release(handle as i32) }
}

#[cfg(target_arch = "wasm32")]
pub fn gpu_last_error(out_len: &mut u32) -> i32 {
    unsafe { imp_gpu::gpu_last_error(out_len) }
}

// Safe wrappers: every pointer below comes from a live Rust slice or array of
// the stated length, which is all the host requires.

#[cfg(target_arch = "wasm32")]
pub fn input_read(buf: &mut [u8]) {
    unsafe { imp::input_read(buf.as_mut_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn output(kind: i32, bytes: &[u8]) {
    unsafe { imp::output(kind, bytes.as_ptr(), bytes.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn panic_message(msg: &str) {
    unsafe { imp::panic_message(msg.as_ptr(), msg.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn submit(function: &str, args: &[u8], opts: &[u8], out_id: &mut [u8; 16]) -> i32 {
    unsafe {
        imp::submit(
            function.as_ptr(),
            function.len(),
            args.as_ptr(),
            args.len(),
            opts.as_ptr(),
            opts.len(),
            out_id.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn put(bytes: &[u8], out_id: &mut [u8; 16]) -> i32 {
    unsafe { imp::put(bytes.as_ptr(), bytes.len(), out_id.as_mut_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn get(id: &[u8; 16], timeout_ms: i64, out_len: &mut u32) -> i32 {
    unsafe { imp::get(id.as_ptr(), timeout_ms, out_len) }
}

#[cfg(target_arch = "wasm32")]
pub fn take(buf: &mut [u8]) {
    unsafe { imp::take(buf.as_mut_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn take_range(buf: &mut [u8], offset: usize) {
    unsafe { imp::take_range(buf.as_mut_ptr(), offset, buf.len()) }
}

/// Appends `len` staged bytes from `offset` to `buf` without zeroing the
/// room first. The host writes all `len` bytes or traps (the guest then
/// never runs on), so the bytes are initialized when this returns.
#[cfg(target_arch = "wasm32")]
pub fn take_range_into(buf: &mut Vec<u8>, offset: usize, len: usize) {
    buf.reserve(len);
    let room = &mut buf.spare_capacity_mut()[..len];
    unsafe {
        imp::take_range(room.as_mut_ptr().cast(), offset, len);
        buf.set_len(buf.len() + len);
    }
}

#[cfg(target_arch = "wasm32")]
pub fn put_parts(parts: &[&[u8]], out_id: &mut [u8; 16]) -> i32 {
    // (pointer, length) pairs as the host reads them: u32 little-endian.
    let table: Vec<u32> = parts
        .iter()
        .flat_map(|p| [p.as_ptr() as u32, p.len() as u32])
        .collect();
    unsafe { imp::put_parts(table.as_ptr(), parts.len(), out_id.as_mut_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn wait(ids: &[u8], count: usize, num_returns: usize, timeout_ms: i64, out: &mut [u8]) -> i32 {
    debug_assert!(ids.len() == count * 16 && out.len() == count);
    unsafe {
        imp::wait(
            ids.as_ptr(),
            count,
            num_returns,
            timeout_ms,
            out.as_mut_ptr(),
        )
    }
}

#[cfg(target_arch = "wasm32")]
pub fn cancel(id: &[u8; 16]) -> i32 {
    unsafe { imp::cancel(id.as_ptr()) }
}

#[cfg(target_arch = "wasm32")]
pub fn free(ids: &[u8], count: usize) -> i32 {
    unsafe { imp::free(ids.as_ptr(), count) }
}

#[cfg(target_arch = "wasm32")]
pub fn log(level: i32, msg: &str) {
    unsafe { imp::log(level, msg.as_ptr(), msg.len()) }
}

#[cfg(target_arch = "wasm32")]
pub fn attempt() -> i32 {
    unsafe { imp::attempt() }
}

#[cfg(target_arch = "wasm32")]
pub fn store_stats(out: &mut [u8; prism_abi::STORE_STATS_LEN]) -> i32 {
    unsafe { imp::store_stats(out.as_mut_ptr()) };
    0
}

#[cfg(target_arch = "wasm32")]
pub fn metric(update: &[u8]) -> i32 {
    unsafe { imp::metric(update.as_ptr(), update.len()) }
}

#[cfg(not(target_arch = "wasm32"))]
mod native {
    use super::NOT_IN_GUEST;

    pub fn input_read(_buf: &mut [u8]) {}
    pub fn output(_kind: i32, _bytes: &[u8]) {}
    pub fn panic_message(_msg: &str) {}
    pub fn submit(_function: &str, _args: &[u8], _opts: &[u8], _out_id: &mut [u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn put(_bytes: &[u8], _out_id: &mut [u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn get(_id: &[u8; 16], _timeout_ms: i64, _out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn take(_buf: &mut [u8]) {}
    pub fn take_range(_buf: &mut [u8], _offset: usize) {}
    pub fn take_range_into(buf: &mut Vec<u8>, _offset: usize, len: usize) {
        buf.resize(buf.len() + len, 0);
    }
    pub fn put_parts(_parts: &[&[u8]], _out_id: &mut [u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn wait(
        _ids: &[u8],
        _count: usize,
        _num_returns: usize,
        _timeout_ms: i64,
        _out: &mut [u8],
    ) -> i32 {
        NOT_IN_GUEST
    }
    pub fn cancel(_id: &[u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn free(_ids: &[u8], _count: usize) -> i32 {
        NOT_IN_GUEST
    }
    pub fn log(_level: i32, msg: &str) {
        eprintln!("{msg}");
    }
    pub fn attempt() -> i32 {
        0
    }
    pub fn store_stats(_out: &mut [u8; prism_abi::STORE_STATS_LEN]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn metric(_update: &[u8]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn actor_create(_class: &str, _args: &[u8], _opts: &[u8], _out_id: &mut [u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn actor_call(_id: &[u8; 16], _method: &str, _args: &[u8], _out_id: &mut [u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn serve_call(
        _app: &str,
        _deployment: &str,
        _request: &[u8],
        _out_id: &mut [u8; 16],
    ) -> i32 {
        NOT_IN_GUEST
    }
    pub fn serve_call_method(
        _app: &str,
        _deployment: &str,
        _method: &str,
        _args: &[u8],
        _out_id: &mut [u8; 16],
    ) -> i32 {
        NOT_IN_GUEST
    }
    pub fn actor_lookup(
        _namespace: &str,
        _name: &str,
        _class: &str,
        _out_id: &mut [u8; 16],
    ) -> i32 {
        NOT_IN_GUEST
    }
    pub fn actor_kill(_id: &[u8; 16]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn actor_exit() -> i32 {
        NOT_IN_GUEST
    }
    pub fn named_put(_name: &str, _value: &[u8], _tier: i32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn named_get(_name: &str, _out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn named_delete(_name: &str) -> i32 {
        NOT_IN_GUEST
    }
    pub fn named_list(_prefix: &str, _out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn pg_create(_spec: &[u8], _out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn pg_remove(_id: &str) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_device_count() -> i32 {
        0
    }
    pub fn gpu_device_info(_index: u32, _out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_shader_create(_device: u32, _source: &str, _entry: &str) -> i64 {
        NOT_IN_GUEST as i64
    }
    pub fn gpu_buffer_create(_device: u32, _size: u64, _usage: i32) -> i64 {
        NOT_IN_GUEST as i64
    }
    pub fn gpu_buffer_write(_buffer: u32, _offset: u64, _bytes: &[u8]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_buffer_read(_buffer: u32, _offset: u64, _out: &mut [u8]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_dispatch(_shader: u32, _bindings: &[u8], _workgroups: [u32; 3]) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_release(_handle: u32) -> i32 {
        NOT_IN_GUEST
    }
    pub fn gpu_last_error(_out_len: &mut u32) -> i32 {
        NOT_IN_GUEST
    }
}

#[cfg(not(target_arch = "wasm32"))]
pub use native::*;
