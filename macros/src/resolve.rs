//! Resolving names: the RPCs of the service from the user's impl block, then each RPC
//! name an entry writes to one of them.
//!
//! tonic's server trait has one method per RPC and no defaults, so the impl lists every
//! RPC. Its shape tells the kind: a `tonic::Streaming<_>` request means requests stream;
//! an associated `type <Rpc>Stream` means responses stream.

use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, ImplItem, ImplItemFn, ItemImpl, Path, PathArguments, Type};

use crate::ctxt::Ctxt;
use crate::parse::Args;

/// An RPC's index in `Service::rpcs`.
pub type RpcId = usize;

/// For each entry, in declared order, the RPC each of its names resolved to (`None`: not
/// an RPC, already reported).
pub type EntryRpcs = Vec<Vec<Option<RpcId>>>;

pub struct Service {
    /// The trait's last segment, e.g. `UserService`.
    pub name: Ident,
    /// Where the generated RPC types live: `pb::user_service_intercept`.
    pub rpc_module: Path,
    pub rpcs: Vec<RpcMethod>,
}

pub struct RpcMethod {
    /// `ListUsers`: the UpperCamel form of the handler's name, as the generator emits.
    pub name: String,
    /// The handler's name, `list_users`, where errors about the RPC point.
    pub ident: Ident,
    pub client_streaming: bool,
    pub server_streaming: bool,
}

impl RpcMethod {
    pub fn kind(&self) -> &'static str {
        match (self.client_streaming, self.server_streaming) {
            (false, false) => "unary",
            (false, true) => "server-streaming",
            (true, false) => "client-streaming",
            (true, true) => "bidi-streaming",
        }
    }
}

impl Service {
    pub fn read(item: &ItemImpl) -> syn::Result<Self> {
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
            rpcs.push(RpcMethod {
                client_streaming: request_streams(f),
                server_streaming: streams.contains(&format!("{rpc}Stream")),
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

    pub fn names(&self) -> String {
        self.rpcs
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Every RPC name must exist: a typo would otherwise silently leave an RPC without the
/// policy the user meant for it. An unknown name is reported with the nearest RPC.
pub fn rpc_names(cx: &Ctxt, args: &Args, service: &Service) -> EntryRpcs {
    let resolve = |ident: &Ident| -> Option<RpcId> {
        let name = ident.to_string();
        let found = service.rpcs.iter().position(|r| r.name == name);
        if found.is_none() {
            let hint = match nearest(&name, service.rpcs.iter().map(|r| r.name.as_str())) {
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

/// The candidate nearest to a misspelt `name`, if one is near enough to suggest: the
/// same letters ignoring case and underscores, or a few edits away.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let squash = |s: &str| s.to_lowercase().replace('_', "");
    let lower = squash(name);
    candidates
        .into_iter()
        .map(|candidate| {
            let distance = if squash(candidate) == lower {
                0
            } else {
                levenshtein(name, candidate)
            };
            (distance, candidate)
        })
        .filter(|(d, candidate)| *d <= (candidate.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

/// `pb::user_service_server::UserService` -> `pb::user_service_intercept`; a bare
/// `UserService` -> `user_service_intercept`, to be in scope.
fn rpc_module(trait_path: &Path) -> Path {
    let mut path = trait_path.clone();
    let last = path.segments.pop().expect("non-empty").into_value();
    let module = match path.segments.pop() {
        Some(server) if server.value().ident.to_string().ends_with("_server") => {
            let stem = server.value().ident.to_string();
            format!("{}_intercept", stem.trim_end_matches("_server"))
        }
        Some(other) => {
            path.segments.push(other.into_value());
            format!("{}_intercept", naive_snake_case(&last.ident.to_string()))
        }
        None => format!("{}_intercept", naive_snake_case(&last.ident.to_string())),
    };
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

/// Must agree with `tonic-intercept-build`'s `upper_camel`.
pub fn upper_camel(snake: &str) -> String {
    snake
        .trim_start_matches("r#")
        .split('_')
        .filter(|p| !p.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            let first = chars.next().map(|c| c.to_ascii_uppercase());
            first.into_iter().chain(chars).collect::<String>()
        })
        .collect()
}

/// tonic-build's module naming, as in `tonic-intercept-build`.
fn naive_snake_case(name: &str) -> String {
    let mut s = String::new();
    let mut it = name.chars().peekable();
    while let Some(x) = it.next() {
        s.push(x.to_ascii_lowercase());
        if let Some(y) = it.peek()
            && y.is_uppercase()
        {
            s.push('_');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::levenshtein;

    #[test]
    fn edit_distance() {
        assert_eq!(levenshtein("GetUsr", "GetUser"), 1);
        assert_eq!(levenshtein("ListUser", "ListUsers"), 1);
        assert_eq!(levenshtein("", "abc"), 3);
    }
}
