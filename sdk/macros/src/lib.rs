//! Procedural macros of the Prism guest SDK. Use them through the `prism`
//! crate: `#[prism::task]` and `#[prism::main]`.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};
use syn::{
    FnArg, GenericArgument, ItemFn, PathArguments, ReturnType, Type, parse_macro_input,
    spanned::Spanned,
};

/// Makes a function a Prism task.
///
/// For `fn square(x: u64) -> u64` this keeps the function as it is and adds:
/// - `square::remote(x)`: submit a call, get an `ObjectRef<u64>` at once. `x`
///   may be a `u64` or an `ObjectRef<u64>` (resolved before the call).
/// - `square::options().num_cpus(2.0).max_retries(0).remote(x)`: the same
///   with per-call options (`num_cpus`, `memory`, `resource`, `max_retries`,
///   `timeout`, or a whole `prism::TaskOptions` through `with`).
/// - the wasm export `__prism_task_square` the host calls.
///
/// A function returning `Result<T, E>` (`E: Display`) yields `ObjectRef<T>`;
/// an `Err` reaches the caller as an application error (with the serialized
/// `E` as payload when `E: Serialize`). Tasks cannot be generic, `async`, or
/// take `self`; task names must be unique in a module.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry(attr, item, EntryKind::Task)
}

/// Marks a job's driver: the function `prism run` (or a job submission)
/// calls first. It takes deserializable arguments and may return
/// `Result<T, E>` like a task; its export is `__prism_main_<name>`.
#[proc_macro_attribute]
pub fn main(attr: TokenStream, item: TokenStream) -> TokenStream {
    entry(attr, item, EntryKind::Main)
}

#[derive(Clone, Copy, PartialEq)]
enum EntryKind {
    Task,
    Main,
}

fn entry(attr: TokenStream, item: TokenStream, kind: EntryKind) -> TokenStream {
    if !attr.is_empty() {
        return syn::Error::new(
            Span::call_site(),
            "this attribute takes no arguments; set options per call with `name::options()`",
        )
        .to_compile_error()
        .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    match expand(&func, kind) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn expand(func: &ItemFn, kind: EntryKind) -> syn::Result<TokenStream2> {
    let sig = &func.sig;
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new(
            sig.generics.span(),
            "Prism tasks cannot be generic",
        ));
    }
    if sig.asyncness.is_some() {
        return Err(syn::Error::new(sig.span(), "Prism tasks cannot be async"));
    }
    let name = &sig.ident;
    let vis = &func.vis;
    let mut arg_types = Vec::new();
    for input in &sig.inputs {
        match input {
            FnArg::Typed(pat) => arg_types.push((*pat.ty).clone()),
            FnArg::Receiver(r) => {
                return Err(syn::Error::new(r.span(), "Prism tasks cannot take `self`"));
            }
        }
    }
    let arg_names: Vec<_> = (0..arg_types.len())
        .map(|i| format_ident!("__prism_arg{i}"))
        .collect();
    let (ok_type, returns_result) = match &sig.output {
        ReturnType::Default => (syn::parse_quote!(()), false),
        ReturnType::Type(_, ty) => match result_ok_type(ty) {
            Some(ok) => (ok, true),
            None => ((**ty).clone(), false),
        },
    };

    let prefix = match kind {
        EntryKind::Task => "__prism_task_",
        EntryKind::Main => "__prism_main_",
    };
    let export_name = format!("{prefix}{name}");
    let export_fn = format_ident!("{prefix}{name}");
    let arity = arg_types.len() as u32;
    let args_type = if arg_types.is_empty() {
        quote!([u8; 0])
    } else {
        quote!((#(#arg_types,)*))
    };
    let args_pattern = if arg_types.is_empty() {
        quote!(_)
    } else {
        quote!((#(#arg_names,)*))
    };
    let produce = if returns_result {
        quote! {
            match #name(#(#arg_names),*) {
                Ok(value) => ::prism::__private::ok(&value),
                Err(error) => {
                    #[allow(unused_imports)]
                    use ::prism::__private::{PayloadViaNothing as _, PayloadViaSerialize as _};
                    let payload = (&::prism::__private::ErrPayload(&error)).payload();
                    ::prism::__private::err(&error, payload)
                }
            }
        }
    } else {
        quote! { ::prism::__private::ok(&#name(#(#arg_names),*)) }
    };
    let export = quote! {
        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[unsafe(export_name = #export_name)]
        pub extern "C" fn #export_fn(input_len: u32) {
            ::prism::__private::run_entry::<#args_type>(input_len, #arity, |#args_pattern: #args_type| {
                #produce
            })
        }
    };

    let remote = if kind == EntryKind::Task {
        let fn_name = name.to_string();
        let params: Vec<_> = arg_names
            .iter()
            .zip(&arg_types)
            .map(|(n, t)| quote!(#n: impl ::prism::IntoArg<#t>))
            .collect();
        let appends: Vec<_> = arg_names
            .iter()
            .zip(&arg_types)
            .map(|(n, t)| quote!(::prism::IntoArg::<#t>::append_to(#n, &mut args);))
            .collect();
        let doc = format!(
            "Remote calls of the task `{name}`: `{name}::remote(..)` and `{name}::options()`."
        );
        quote! {
            #[doc = #doc]
            #[allow(non_snake_case, clippy::too_many_arguments)]
            #vis mod #name {
                #[allow(unused_imports)]
                use super::*;

                /// Submits a call with default options; returns its result's ref at once.
                pub fn remote(#(#params),*) -> ::prism::ObjectRef<#ok_type> {
                    options().remote(#(#arg_names),*)
                }

                /// Starts a call with per-call options.
                pub fn options() -> Call {
                    Call(::prism::TaskOptions::new())
                }

                /// A call being configured; finish it with `remote`.
                #[must_use = "a call does nothing until `remote` is called"]
                pub struct Call(::prism::TaskOptions);

                impl Call {
                    /// Replaces all options.
                    pub fn with(self, options: ::prism::TaskOptions) -> Self { Call(options) }
                    /// See `prism::TaskOptions::num_cpus` (default 1).
                    pub fn num_cpus(self, cpus: f64) -> Self { Call(self.0.num_cpus(cpus)) }
                    /// See `prism::TaskOptions::memory` (default: node limit, 256 MiB).
                    pub fn memory(self, bytes: u64) -> Self { Call(self.0.memory(bytes)) }
                    /// See `prism::TaskOptions::resource` (default: none).
                    pub fn resource(self, name: &str, amount: f64) -> Self { Call(self.0.resource(name, amount)) }
                    /// See `prism::TaskOptions::max_retries` (default 3).
                    pub fn max_retries(self, retries: u32) -> Self { Call(self.0.max_retries(retries)) }
                    /// See `prism::TaskOptions::timeout` (default: node task timeout, 300 s).
                    pub fn timeout(self, timeout: ::std::time::Duration) -> Self { Call(self.0.timeout(timeout)) }
                    /// Submits the call; returns its result's ref at once.
                    pub fn remote(self, #(#params),*) -> ::prism::ObjectRef<#ok_type> {
                        let mut args = ::std::vec::Vec::new();
                        #(#appends)*
                        ::prism::__private::submit(#fn_name, &self.0, &args)
                    }
                }
            }
        }
    } else {
        quote!()
    };

    Ok(quote! {
        #func
        #remote
        #export
    })
}

/// For `Result<T, E>` (any path ending in `Result` with generic arguments),
/// the `T`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
}
