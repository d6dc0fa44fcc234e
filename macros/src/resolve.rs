//! Resolving names: the RPCs of the service from the user's impl block, then each RPC
//! name an entry writes to one of them.
//!
//! tonic's server trait has one method per RPC and no defaults, so the impl lists every
//! RPC. Its shape tells the kind: a `tonic::Streaming<_>` request means requests stream;
//! an associated `type <Rpc>Stream` means responses stream.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Path, PathArguments, Type};
use tonic_intercept_spec::naming::{intercept_module, intercept_module_of_server, upper_camel};
use tonic_intercept_spec::{RpcKind, closest};

use crate::ctxt::Ctxt;
use crate::parse::Args;

/// An RPC's index in `Service::rpcs`.
pub(crate) type RpcId = usize;

/// For each entry, in declared order, the RPC each of its names resolved to (`None`: not
/// an RPC, already reported).
pub(crate) type EntryRpcs = Vec<Vec<Option<RpcId>>>;

pub(crate) struct Service {
    /// The trait's last segment, e.g. `UserService`.
    pub name: Ident,
    /// Where the generated RPC types live: `pb::user_service_intercept`.
    pub rpc_module: Path,
    pub rpcs: Vec<RpcMethod>,
}

pub(crate) struct RpcMethod {
    /// `ListUsers`: the UpperCamel form of the handler's name, as the generator emits.
    pub name: String,
    /// The handler's name, `list_users`, where errors about the RPC point.
    pub ident: Ident,
    pub kind: RpcKind,
}

impl Service {
    pub(crate) fn read(item: &ItemImpl) -> syn::Result<Self> {
        let Some((_, trait_path, _)) = &item.trait_ else {
            return Err(syn::Error::new(
                item.self_ty.span(),
                "#[intercept] goes on the impl of a tonic service trait: `impl pb::user_service_server::UserService for MyService`",
            ));
        };
        let desugared = item.items.iter().any(|i| match i {
            ImplItem::Fn(f) => {
                f.sig.asyncness.is_none()
                    && f.sig
                        .generics
                        .lifetimes()
                        .any(|l| l.lifetime.ident == "async_trait")
            }
            _ => false,
        });
        if desugared {
            return Err(syn::Error::new(
                Span::call_site(),
                "#[intercept] must be placed above #[tonic::async_trait]; below it, the handlers are already boxed futures that #[intercept] cannot wrap",
            ));
        }
        let name = trait_path
            .segments
            .last()
            .expect("a trait path has a segment")
            .ident
            .clone();
        let streams: Vec<String> = item
            .items
            .iter()
            .filter_map(|i| match i {
                ImplItem::Type(t) => Some(t.ident.to_string()),
                _ => None,
            })
            .collect();
        let mut rpcs = Vec::new();
        for f in item.items.iter().filter_map(|i| match i {
            ImplItem::Fn(f) => Some(f),
            _ => None,
        }) {
            if f.sig.asyncness.is_none() {
                return Err(syn::Error::new(
                    f.sig.fn_token.span,
                    "tonic service handlers must be `async fn` (with #[tonic::async_trait] below #[intercept])",
                ));
            }
            let rpc = upper_camel(&f.sig.ident.to_string());
            let server_streaming = streams.contains(&format!("{rpc}Stream"));
            rpcs.push(RpcMethod {
                kind: RpcKind::from_streaming(request_streams(f), server_streaming),
                name: rpc,
                ident: f.sig.ident.clone(),
            });
        }
        Ok(Service {
            rpc_module: rpc_module(trait_path),
            name,
            rpcs,
        })
    }

    pub(crate) fn names(&self) -> String {
        self.rpcs
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every RPC name must exist: a typo would otherwise silently leave an RPC without the
/// policy the user meant for it. An unknown name is reported with the nearest RPC.
pub(crate) fn rpc_names(cx: &Ctxt, args: &Args, service: &Service) -> EntryRpcs {
    let resolve = |ident: &Ident| -> Option<RpcId> {
        let name = ident.to_string();
        let found = service.rpcs.iter().position(|r| r.name == name);
        if found.is_none() {
            let candidates = service.rpcs.iter().map(|r| r.name.as_str());
            let hint = match closest(&name, candidates) {
                Some(near) => format!("; did you mean `{near}`?"),
                None => String::new(),
            };
            cx.error_at(
                ident.span(),
                format!(
                    "`{name}` is not an RPC of `{}`{hint} (its RPCs: {})",
                    service.name,
                    service.names()
                ),
            );
        }
        found
    };
    args.entries
        .iter()
        .map(|entry| entry.rpc_names().iter().map(resolve).collect())
        .collect()
}

/// `pb::user_service_server::UserService` -> `pb::user_service_intercept`; a bare
/// `UserService` -> `user_service_intercept`, to be in scope.
fn rpc_module(trait_path: &Path) -> Path {
    let mut path = trait_path.clone();
    let last = path.segments.pop().expect("non-empty").into_value();
    let beside_server = path.segments.pop().and_then(|pair| {
        let module = intercept_module_of_server(&pair.value().ident.to_string());
        if module.is_none() {
            path.segments.push(pair.into_value());
        }
        module
    });
    let module = beside_server.unwrap_or_else(|| intercept_module(&last.ident.to_string()));
    path.segments
        .push(Ident::new(&module, last.ident.span()).into());
    path
}

fn request_streams(f: &ImplItemFn) -> bool {
    f.sig.inputs.iter().any(|arg| match arg {
        FnArg::Typed(t) => mentions_streaming(&t.ty),
        FnArg::Receiver(_) => false,
    })
}

fn mentions_streaming(ty: &Type) -> bool {
    let Type::Path(p) = ty else { return false };
    p.path.segments.iter().any(|seg| {
        seg.ident == "Streaming"
            || match &seg.arguments {
                PathArguments::AngleBracketed(args) => args.args.iter().any(|a| match a {
                    syn::GenericArgument::Type(t) => mentions_streaming(t),
                    _ => false,
                }),
                _ => false,
            }
    })
}
