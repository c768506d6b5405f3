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
///   with per-call options (`num_cpus`, `num_gpus`, `memory`, `resource`, `max_retries`,
///   `max_calls`, `timeout`, `spread`, `node`, or a whole `prism::TaskOptions`
///   through `with`).
/// - `square::step(x)` (and `square::options()...step(x)`): a durable
///   workflow step, a `prism::workflow::Step<u64>` that runs nothing by
///   itself. `x` may be a `u64`, a `Step<u64>` (run first, its output
///   passed), or anything else implementing
///   `prism::workflow::StepArg<u64>`.
/// - the wasm export `__prism_task_square` the host calls.
///
/// A function returning `Result<T, E>` (`E: Display`) yields `ObjectRef<T>`;
/// an `Err` reaches the caller as an application error (with the serialized
/// `E` as payload when `E: Serialize`). A function returning `Next<T>` (or
/// `Result<Next<T>, E>`; any path ending in `Next`, i.e.
/// `prism::workflow::Next`) may continue with another step when run as a
/// workflow step, and its `step` is a `Step<T>`. Tasks cannot be generic,
/// `async`, or take `self`; task names must be unique in a module.
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

/// Makes a struct and its impl block a Prism actor.
///
/// On the struct, `#[prism::actor]` generates the handle type
/// (`<Name>Handle`: `Copy`, serializable, passable to tasks and actors).
/// `#[prism::actor(persistent)]` also saves the struct (which must be
/// `Serialize + Deserialize`) to the host's durable store after every
/// successful call, and restores it when the actor restarts or is created
/// again under the same name.
///
/// On the impl block, it requires a constructor `fn new(..) -> Self` (or
/// `-> Result<Self, E>`) and turns every method taking `&self` or `&mut self`
/// into a remote method. It adds:
/// - `Name::remote(args) -> NameHandle` (default options, never fails: a
///   failed creation surfaces on the first call);
/// - `Name::options().name("n").detached().max_restarts(3).remote(args)
///   -> prism::Result<NameHandle>`;
/// - `Name::get_or_create("n", args) -> prism::Result<NameHandle>`;
/// - on the handle, one stub per method: `handle.add(5).remote()`
///   returns an `ObjectRef` of the method's return type.
#[proc_macro_attribute]
pub fn actor(attr: TokenStream, item: TokenStream) -> TokenStream {
    let persistent = match attr.to_string().trim() {
        "" => false,
        "persistent" => true,
        other => {
            return syn::Error::new(
                Span::call_site(),
                format!("unknown actor option `{other}`; the only option is `persistent`"),
            )
            .to_compile_error()
            .into();
        }
    };
    let item = parse_macro_input!(item as syn::Item);
    let result = match &item {
        syn::Item::Struct(s) => Ok(actor_struct(s, persistent)),
        syn::Item::Impl(i) if !persistent => actor_impl(i),
        syn::Item::Impl(i) => Err(syn::Error::new(
            i.span(),
            "`persistent` goes on the actor's struct, not its impl block",
        )),
        other => Err(syn::Error::new(
            other.span(),
            "#[prism::actor] goes on a struct and on its impl block",
        )),
    };
    match result {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn actor_struct(item: &syn::ItemStruct, persistent: bool) -> TokenStream2 {
    let name = &item.ident;
    let vis = &item.vis;
    let class = name.to_string();
    let handle = format_ident!("{name}Handle");
    let doc = format!(
        "A handle to a `{name}` actor: copy it, pass it to tasks and actors, call its methods."
    );
    let persistence = if persistent {
        let save = format!("{}{class}", "__prism_actor_save_");
        let restore = format!("{}{class}", "__prism_actor_restore_");
        let save_fn = format_ident!("__prism_actor_save_{class}");
        let restore_fn = format_ident!("__prism_actor_restore_{class}");
        quote! {
            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            #[allow(non_snake_case)]
            #[unsafe(export_name = #save)]
            pub extern "C" fn #save_fn(_input_len: u32) {
                ::prism::__private::run_actor_save::<#name>()
            }

            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            #[allow(non_snake_case)]
            #[unsafe(export_name = #restore)]
            pub extern "C" fn #restore_fn(input_len: u32) {
                ::prism::__private::run_actor_restore::<#name>(input_len)
            }
        }
    } else {
        quote!()
    };
    quote! {
        #item

        #[doc = #doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #vis struct #handle(::prism::ActorId);

        impl ::std::convert::From<::prism::ActorId> for #handle {
            fn from(id: ::prism::ActorId) -> Self {
                #handle(id)
            }
        }

        impl ::prism::ActorHandle for #handle {
            fn actor_id(&self) -> ::prism::ActorId {
                self.0
            }
        }

        impl ::prism::__private::serde::Serialize for #handle {
            fn serialize<S: ::prism::__private::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                ::prism::__private::serde::Serialize::serialize(&self.0, serializer)
            }
        }

        impl<'de> ::prism::__private::serde::Deserialize<'de> for #handle {
            fn deserialize<D: ::prism::__private::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                <::prism::ActorId as ::prism::__private::serde::Deserialize>::deserialize(deserializer).map(#handle)
            }
        }

        impl ::prism::Actor for #name {
            const CLASS: &'static str = #class;
            type Handle = #handle;
        }

        #persistence
    }
}

/// The typed parameters of a signature (without the receiver).
fn typed_params(sig: &syn::Signature) -> Vec<Type> {
    sig.inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(pat) => Some((*pat.ty).clone()),
            FnArg::Receiver(_) => None,
        })
        .collect()
}

/// How a function's return value becomes the call's output.
fn produce_output(call: TokenStream2, returns_result: bool) -> TokenStream2 {
    if returns_result {
        let failure = application_error();
        quote! {
            match #call {
                Ok(value) => ::prism::__private::ok(&value),
                Err(error) => #failure,
            }
        }
    } else {
        quote! { ::prism::__private::ok(&#call) }
    }
}

/// The `TaskOutput` of an application error held in `error`: its message,
/// and its serialized value when its type is `Serialize`.
fn application_error() -> TokenStream2 {
    quote! {{
        #[allow(unused_imports)]
        use ::prism::__private::{PayloadViaNothing as _, PayloadViaSerialize as _};
        let payload = (&::prism::__private::ErrPayload(&error)).payload();
        ::prism::__private::err(&error, payload)
    }}
}

fn args_type_and_pattern(types: &[Type], names: &[syn::Ident]) -> (TokenStream2, TokenStream2) {
    if types.is_empty() {
        (quote!([u8; 0]), quote!(_))
    } else {
        (quote!((#(#types,)*)), quote!((#(#names,)*)))
    }
}

fn actor_impl(item: &syn::ItemImpl) -> syn::Result<TokenStream2> {
    if !item.generics.params.is_empty() || item.trait_.is_some() {
        return Err(syn::Error::new(
            item.span(),
            "#[prism::actor] goes on the actor's own (non-generic, non-trait) impl block",
        ));
    }
    let Type::Path(self_path) = &*item.self_ty else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            "expected the actor struct's name",
        ));
    };
    let Some(name) = self_path.path.get_ident().cloned() else {
        return Err(syn::Error::new(
            item.self_ty.span(),
            "expected the actor struct's name",
        ));
    };
    let class = name.to_string();
    let handle = format_ident!("{name}Handle");
    let options = format_ident!("{name}Options");
    let functions: Vec<&syn::ImplItemFn> = item
        .items
        .iter()
        .filter_map(|i| match i {
            syn::ImplItem::Fn(f) => Some(f),
            _ => None,
        })
        .collect();
    let Some(ctor) = functions
        .iter()
        .find(|f| f.sig.ident == "new" && f.sig.receiver().is_none())
    else {
        return Err(syn::Error::new(
            item.span(),
            "an actor impl needs a constructor `fn new(..) -> Self` (or `-> Result<Self, E>`)",
        ));
    };

    // Constructor: creation functions and the export.
    let ctor_types = typed_params(&ctor.sig);
    let ctor_names: Vec<_> = (0..ctor_types.len())
        .map(|i| format_ident!("__prism_arg{i}"))
        .collect();
    let ctor_params: Vec<_> = ctor_names
        .iter()
        .zip(&ctor_types)
        .map(|(n, t)| quote!(#n: impl ::prism::IntoArg<#t>))
        .collect();
    let ctor_appends: Vec<_> = ctor_names
        .iter()
        .zip(&ctor_types)
        .map(|(n, t)| quote!(::prism::IntoArg::<#t>::append_to(#n, &mut args);))
        .collect();
    let ctor_returns_result = match &ctor.sig.output {
        ReturnType::Type(_, ty) => result_ok_type(ty).is_some(),
        ReturnType::Default => false,
    };
    let ctor_arity = ctor_types.len() as u32;
    let (ctor_args_type, ctor_pattern) = args_type_and_pattern(&ctor_types, &ctor_names);
    let build = if ctor_returns_result {
        let failure = application_error();
        quote! {
            match #name::new(#(#ctor_names),*) {
                Ok(actor) => Ok(actor),
                Err(error) => Err(#failure),
            }
        }
    } else {
        quote! { Ok(#name::new(#(#ctor_names),*)) }
    };
    let new_export_name = format!("__prism_actor_new_{class}");
    let new_export_fn = format_ident!("__prism_actor_new_{class}");

    // Methods: handle stubs and exports.
    let mut stubs = Vec::new();
    let mut exports = Vec::new();
    for f in &functions {
        let Some(receiver) = f.sig.receiver() else {
            continue;
        };
        if receiver.reference.is_none() {
            return Err(syn::Error::new(
                receiver.span(),
                "actor methods take `&self` or `&mut self`, not `self`",
            ));
        }
        let method = &f.sig.ident;
        let method_name = method.to_string();
        let types = typed_params(&f.sig);
        let names: Vec<_> = (0..types.len())
            .map(|i| format_ident!("__prism_arg{i}"))
            .collect();
        let (ok_type, returns_result) = match &f.sig.output {
            ReturnType::Default => (syn::parse_quote!(()), false),
            ReturnType::Type(_, ty) => match result_ok_type(ty) {
                Some(ok) => (ok, true),
                None => ((**ty).clone(), false),
            },
        };
        let params: Vec<_> = names
            .iter()
            .zip(&types)
            .map(|(n, t)| quote!(#n: impl ::prism::IntoArg<#t>))
            .collect();
        let args: Vec<_> = names
            .iter()
            .zip(&types)
            .map(|(n, t)| quote!(.arg::<#t>(#n)))
            .collect();
        let doc = format!("Calls `{class}::{method_name}` on the actor; finish with `.remote()`.");
        stubs.push(quote! {
            #[doc = #doc]
            #[allow(clippy::too_many_arguments)]
            pub fn #method(&self, #(#params),*) -> ::prism::ActorCall<#ok_type> {
                ::prism::ActorCall::new(self.0, #method_name) #(#args)*
            }
        });
        let export_name = format!("__prism_actor_call_{class}__{method_name}");
        let export_fn = format_ident!("__prism_actor_call_{class}__{method_name}");
        let arity = types.len() as u32;
        let (args_type, pattern) = args_type_and_pattern(&types, &names);
        let produce = produce_output(quote!(this.#method(#(#names),*)), returns_result);
        exports.push(quote! {
            #[cfg(target_arch = "wasm32")]
            #[doc(hidden)]
            #[allow(non_snake_case)]
            #[unsafe(export_name = #export_name)]
            pub extern "C" fn #export_fn(input_len: u32) {
                ::prism::__private::run_actor_method::<#name, #args_type>(
                    input_len,
                    #arity,
                    |this: &mut #name, #pattern: #args_type| { #produce },
                )
            }
        });
    }

    let options_doc =
        format!("Options for creating a `{class}` actor; finish with `.remote(args)`.");
    Ok(quote! {
        #item

        impl #name {
            /// Creates the actor with default options and returns its handle
            /// at once. Creation problems surface on the first call's result.
            #[allow(clippy::too_many_arguments)]
            pub fn remote(#(#ctor_params),*) -> #handle {
                Self::options()
                    .remote(#(#ctor_names),*)
                    .unwrap_or_else(|_| #handle::from(::prism::ActorId([0u8; 16])))
            }

            /// Starts creating the actor with options.
            pub fn options() -> #options {
                #options(::prism::ActorOptions::default())
            }

            /// The live actor named `name` in the job's namespace, or a new
            /// one created from `args` under that name.
            #[allow(clippy::too_many_arguments)]
            pub fn get_or_create(name: &str, #(#ctor_params),*) -> ::prism::Result<#handle> {
                Self::options().name(name).get_if_exists().remote(#(#ctor_names),*)
            }
        }

        #[doc = #options_doc]
        pub struct #options(::prism::ActorOptions<#name>);

        impl #options {
            /// See `prism::ActorOptions::num_cpus` (default: 1 to place, 0 held).
            pub fn num_cpus(self, cpus: f64) -> Self { #options(self.0.num_cpus(cpus)) }
            /// See `prism::ActorOptions::num_gpus` (default 0: no GPU).
            pub fn num_gpus(self, gpus: f64) -> Self { #options(self.0.num_gpus(gpus)) }
            /// See `prism::ActorOptions::memory` (default: node limit, 256 MiB).
            pub fn memory(self, bytes: u64) -> Self { #options(self.0.memory(bytes)) }
            /// See `prism::ActorOptions::resource` (default: none).
            pub fn resource(self, name: &str, amount: f64) -> Self { #options(self.0.resource(name, amount)) }
            /// See `prism::ActorOptions::max_restarts` (default 0; -1 unlimited).
            pub fn max_restarts(self, restarts: i32) -> Self { #options(self.0.max_restarts(restarts)) }
            /// See `prism::ActorOptions::max_task_retries` (default 0).
            pub fn max_task_retries(self, retries: u32) -> Self { #options(self.0.max_task_retries(retries)) }
            /// See `prism::ActorOptions::name` (default: unnamed).
            pub fn name(self, name: &str) -> Self { #options(self.0.name(name)) }
            /// See `prism::ActorOptions::namespace` (default: the job's).
            pub fn namespace(self, namespace: &str) -> Self { #options(self.0.namespace(namespace)) }
            /// See `prism::ActorOptions::node` (default: any node).
            pub fn node(self, node_id: &str, soft: bool) -> Self { #options(self.0.node(node_id, soft)) }
            /// See `prism::ActorOptions::spread` (default: the creating node first).
            pub fn spread(self) -> Self { #options(self.0.spread()) }
            /// See `prism::ActorOptions::detached` (default: ends with its job).
            pub fn detached(self) -> Self { #options(self.0.detached()) }
            /// See `prism::ActorOptions::get_if_exists` (default: a taken name is an error).
            pub fn get_if_exists(self) -> Self { #options(self.0.get_if_exists()) }
            /// Creates the actor; returns its handle at once.
            #[allow(clippy::too_many_arguments)]
            pub fn remote(self, #(#ctor_params),*) -> ::prism::Result<#handle> {
                let mut args = ::std::vec::Vec::new();
                #(#ctor_appends)*
                self.0.create(&args)
            }
        }

        impl #handle {
            #(#stubs)*
        }

        #[cfg(target_arch = "wasm32")]
        #[doc(hidden)]
        #[allow(non_snake_case)]
        #[unsafe(export_name = #new_export_name)]
        pub extern "C" fn #new_export_fn(input_len: u32) {
            ::prism::__private::run_actor_new::<#name, #ctor_args_type>(
                input_len,
                #ctor_arity,
                |#ctor_pattern: #ctor_args_type| { #build },
            )
        }

        #(#exports)*
    })
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
    let (args_type, args_pattern) = args_type_and_pattern(&arg_types, &arg_names);
    let produce = produce_output(quote!(#name(#(#arg_names),*)), returns_result);
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
        let step_params: Vec<_> = arg_names
            .iter()
            .zip(&arg_types)
            .map(|(n, t)| quote!(#n: impl ::prism::workflow::StepArg<#t>))
            .collect();
        let step_args: Vec<_> = arg_names
            .iter()
            .zip(&arg_types)
            .map(|(n, t)| quote!(::prism::workflow::StepArg::<#t>::to_step_arg(#n)))
            .collect();
        let step_type = next_inner_type(&ok_type).unwrap_or_else(|| ok_type.clone());
        let doc = format!(
            "Remote calls of the task `{name}`: `{name}::remote(..)`, `{name}::step(..)` \
             and `{name}::options()`."
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

                /// A workflow step calling this task with default options; runs
                /// nothing until the workflow engine runs it.
                pub fn step(#(#step_params),*) -> ::prism::workflow::Step<#step_type> {
                    options().step(#(#arg_names),*)
                }

                /// Starts a call with per-call options.
                pub fn options() -> Call {
                    Call(::prism::TaskOptions::new())
                }

                /// A call being configured; finish it with `remote` (or `step`).
                #[must_use = "a call does nothing until `remote` or `step` is called"]
                pub struct Call(::prism::TaskOptions);

                impl Call {
                    /// Replaces all options.
                    pub fn with(self, options: ::prism::TaskOptions) -> Self { Call(options) }
                    /// See `prism::TaskOptions::num_cpus` (default 1).
                    pub fn num_cpus(self, cpus: f64) -> Self { Call(self.0.num_cpus(cpus)) }
                    /// See `prism::TaskOptions::num_gpus` (default 0: no GPU).
                    pub fn num_gpus(self, gpus: f64) -> Self { Call(self.0.num_gpus(gpus)) }
                    /// See `prism::TaskOptions::memory` (default: node limit, 256 MiB).
                    pub fn memory(self, bytes: u64) -> Self { Call(self.0.memory(bytes)) }
                    /// See `prism::TaskOptions::resource` (default: none).
                    pub fn resource(self, name: &str, amount: f64) -> Self { Call(self.0.resource(name, amount)) }
                    /// See `prism::TaskOptions::max_retries` (default 3).
                    pub fn max_retries(self, retries: u32) -> Self { Call(self.0.max_retries(retries)) }
                    /// See `prism::TaskOptions::max_calls` (default: no limit).
                    pub fn max_calls(self, calls: u32) -> Self { Call(self.0.max_calls(calls)) }
                    /// See `prism::TaskOptions::timeout` (default: node task timeout, 300 s).
                    pub fn timeout(self, timeout: ::std::time::Duration) -> Self { Call(self.0.timeout(timeout)) }
                    /// See `prism::TaskOptions::placement_group` (default: none).
                    pub fn placement_group(self, group: &::prism::PlacementGroup, index: u32) -> Self { Call(self.0.placement_group(group, index)) }
                    /// See `prism::TaskOptions::spread` (default: local first, then least loaded).
                    pub fn spread(self) -> Self { Call(self.0.spread()) }
                    /// See `prism::TaskOptions::node` (default: any node).
                    pub fn node(self, node_id: &str, soft: bool) -> Self { Call(self.0.node(node_id, soft)) }
                    /// Submits the call; returns its result's ref at once.
                    pub fn remote(self, #(#params),*) -> ::prism::ObjectRef<#ok_type> {
                        let mut args = ::std::vec::Vec::new();
                        #(#appends)*
                        ::prism::__private::submit(#fn_name, &self.0, &args)
                    }
                    /// Makes the call a workflow step with these options (its
                    /// `max_retries` becomes the step's); runs nothing until the
                    /// workflow engine runs it.
                    pub fn step(self, #(#step_params),*) -> ::prism::workflow::Step<#step_type> {
                        ::prism::workflow::step_of(
                            #fn_name,
                            ::std::vec![#(#step_args),*],
                            ::std::clone::Clone::clone(self.0.to_wire()),
                        )
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

/// For `Next<T>` (any path ending in `Next` with one generic argument, as
/// `prism::workflow::Next<T>`), the `T`.
fn next_inner_type(ty: &Type) -> Option<Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Next" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    if args.args.len() != 1 {
        return None;
    }
    match args.args.first()? {
        GenericArgument::Type(t) => Some(t.clone()),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The step type of a task's ok type, as source text.
    fn step_type_of(ty: Type) -> Option<String> {
        next_inner_type(&ty).map(|t| quote!(#t).to_string())
    }

    #[test]
    fn next_types_give_their_step_type() {
        let u64_text = Some("u64".to_string());
        assert_eq!(step_type_of(syn::parse_quote!(Next<u64>)), u64_text);
        assert_eq!(
            step_type_of(syn::parse_quote!(prism::workflow::Next<u64>)),
            u64_text
        );
        assert_eq!(step_type_of(syn::parse_quote!(u64)), None);
        assert_eq!(step_type_of(syn::parse_quote!(Vec<u64>)), None);
        assert_eq!(step_type_of(syn::parse_quote!(Next<u64, u8>)), None);
        // The ok type of `Result<Next<T>, E>` is `Next<T>`.
        let ok = result_ok_type(&syn::parse_quote!(Result<Next<u64>, String>));
        assert_eq!(ok.and_then(step_type_of), u64_text);
    }
}
