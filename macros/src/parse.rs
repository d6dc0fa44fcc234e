//! Parsing `#[intercept(...)]` arguments into a syntax tree. No rule is checked here
//! beyond the grammar; names are resolved in `resolve.rs` and rules live in `check/`.

use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, Ident, LitInt, Token, Type};

mod kw {
    syn::custom_keyword!(public);
    syn::custom_keyword!(auth);
    syn::custom_keyword!(roles);
    syn::custom_keyword!(limit);
    syn::custom_keyword!(hook);
    syn::custom_keyword!(metrics);
    syn::custom_keyword!(trace);
    syn::custom_keyword!(recover);
    syn::custom_keyword!(validate);
    syn::custom_keyword!(idempotency);
}

pub(crate) const ENTRIES: &str = "`public(..)`, `auth(..)`, `roles(..)`, `limit(..)`, `hook(..)`, `metrics(..)`, `trace`, `recover`, `validate`, `idempotency(..)`";

/// The arguments, entries in declared order.
pub(crate) struct Args {
    pub entries: Vec<Entry>,
}

pub(crate) enum Entry {
    Public(Public),
    Auth(Auth),
    Roles(Roles),
    Limit(Limit),
    Hook(Hook),
    Metrics(Metrics),
    Trace(Trace),
    /// `recover`, `recover(Rpc, ..)`
    Recover(Switch),
    /// `validate`, `validate(Rpc, ..)`
    Validate(Switch),
    Idempotency(Idempotency),
}

/// `roles("admin", "ops", DeleteUser, ..)`; without role strings, the roles the `.proto`
/// declares for the named RPCs
pub(crate) struct Roles {
    pub kw: Ident,
    pub roles: Vec<syn::LitStr>,
    pub rpcs: Vec<Ident>,
}

/// `metrics(self.metrics)` or `metrics(self.metrics, GetUser, ..)`
pub(crate) struct Metrics {
    pub kw: Ident,
    pub value: Expr,
    pub rpcs: Vec<Ident>,
}

/// `trace` (default settings), `trace(self.trace)` (a `TraceCalls`), or
/// `trace(self.trace: TraceCalls<MyRedactor>)`, either followed by RPC names
pub(crate) struct Trace {
    pub kw: Ident,
    pub value: Option<Expr>,
    pub ty: Option<Type>,
    pub rpcs: Vec<Ident>,
}

/// An entry that is on or off per RPC.
pub(crate) struct Switch {
    pub kw: Ident,
    pub rpcs: Vec<Ident>,
}

/// `idempotency(self.orders, PlaceOrder)`
pub(crate) struct Idempotency {
    pub kw: Ident,
    pub cache: Expr,
    pub rpcs: Vec<Ident>,
}

/// `public(CreateUser, Health)` or `public(*)`
pub(crate) struct Public {
    pub kw: Ident,
    pub rpcs: Rpcs,
}

/// `auth(self.verifier)` (every RPC not public) or `auth(self.verifier, GetUser, ..)`
pub(crate) struct Auth {
    pub kw: Ident,
    pub verifier: Expr,
    pub rpcs: Vec<Ident>,
}

/// `limit(key = value, ..)` (every RPC it fits) or `limit(ListUsers, key = value, ..)`;
/// a value is a number, a constant's path, or `none` (no such limit for these RPCs);
/// `shared = self.rates` keeps the entry's call rates in that backend
pub(crate) struct Limit {
    pub kw: Ident,
    pub rpcs: Vec<Ident>,
    pub keys: Vec<LimitKey>,
    pub shared: Option<Shared>,
}

/// `shared = self.rates` in a `limit(..)`: the backend its call rates live in
pub(crate) struct Shared {
    pub kw: Ident,
    pub backend: Expr,
}

/// `hook(Audit)` (a unit struct), `hook(self.audit: Audit)`, either followed by RPC names
pub(crate) struct Hook {
    pub value: Expr,
    pub ty: Type,
    pub rpcs: Vec<Ident>,
}

pub(crate) enum Rpcs {
    All,
    Named(Vec<Ident>),
}

pub(crate) struct LimitKey {
    pub name: Ident,
    pub value: LimitValue,
}

#[derive(Clone)]
pub(crate) enum LimitValue {
    /// `max_messages_out = 10_000`
    Int(LitInt),
    /// `max_messages_out = LIST_USERS_MAX` (a constant), or a word: `delay`, `reject`,
    /// `none`
    Path(syn::Path),
}

impl LimitValue {
    /// Where an error about the value points.
    pub(crate) fn span(&self) -> proc_macro2::Span {
        match self {
            LimitValue::Int(v) => v.span(),
            LimitValue::Path(p) => syn::spanned::Spanned::span(p),
        }
    }

    /// The value as a single word, if it is one.
    pub(crate) fn word(&self) -> Option<&Ident> {
        match self {
            LimitValue::Path(p) => p.get_ident(),
            LimitValue::Int(_) => None,
        }
    }
}

impl Entry {
    /// The RPC names the entry lists; none: every RPC.
    pub(crate) fn rpc_names(&self) -> &[Ident] {
        match self {
            Entry::Public(p) => match &p.rpcs {
                Rpcs::All => &[],
                Rpcs::Named(names) => names,
            },
            Entry::Auth(a) => &a.rpcs,
            Entry::Limit(l) => &l.rpcs,
            Entry::Hook(h) => &h.rpcs,
            Entry::Roles(r) => &r.rpcs,
            Entry::Metrics(m) => &m.rpcs,
            Entry::Trace(t) => &t.rpcs,
            Entry::Recover(s) | Entry::Validate(s) => &s.rpcs,
            Entry::Idempotency(i) => &i.rpcs,
        }
    }

    /// Where an error about the entry as a whole points: its keyword (a hook's type).
    pub(crate) fn span(&self) -> proc_macro2::Span {
        match self {
            Entry::Public(p) => p.kw.span(),
            Entry::Auth(a) => a.kw.span(),
            Entry::Roles(r) => r.kw.span(),
            Entry::Limit(l) => l.kw.span(),
            Entry::Hook(h) => syn::spanned::Spanned::span(&h.ty),
            Entry::Metrics(m) => m.kw.span(),
            Entry::Trace(t) => t.kw.span(),
            Entry::Recover(s) | Entry::Validate(s) => s.kw.span(),
            Entry::Idempotency(i) => i.kw.span(),
        }
    }
}

impl quote::ToTokens for LimitValue {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        match self {
            LimitValue::Int(v) => v.to_tokens(tokens),
            LimitValue::Path(p) => p.to_tokens(tokens),
        }
    }
}

impl Parse for Args {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let entries = Punctuated::<Entry, Token![,]>::parse_terminated(input)?;
        Ok(Args {
            entries: entries.into_iter().collect(),
        })
    }
}

impl Parse for Entry {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let lookahead = input.lookahead1();
        if lookahead.peek(kw::public) {
            parse_public(input).map(Entry::Public)
        } else if lookahead.peek(kw::auth) {
            parse_auth(input).map(Entry::Auth)
        } else if lookahead.peek(kw::limit) {
            parse_limit(input).map(Entry::Limit)
        } else if lookahead.peek(kw::hook) {
            parse_hook(input).map(Entry::Hook)
        } else if lookahead.peek(kw::roles) {
            parse_roles(input).map(Entry::Roles)
        } else if lookahead.peek(kw::metrics) {
            let kw = input.parse::<Ident>()?;
            let content = parenthesized(input, &kw)?;
            let value = content.parse()?;
            let rpcs = rest_idents(&content)?;
            Ok(Entry::Metrics(Metrics { kw, value, rpcs }))
        } else if lookahead.peek(kw::trace) {
            parse_trace(input).map(Entry::Trace)
        } else if lookahead.peek(kw::recover) || lookahead.peek(kw::validate) {
            let switch = parse_switch(input)?;
            Ok(if switch.kw == "recover" {
                Entry::Recover(switch)
            } else {
                Entry::Validate(switch)
            })
        } else if lookahead.peek(kw::idempotency) {
            let kw = input.parse::<Ident>()?;
            let content = parenthesized(input, &kw)?;
            let cache = content.parse()?;
            let rpcs = rest_idents(&content)?;
            Ok(Entry::Idempotency(Idempotency { kw, cache, rpcs }))
        } else if input.peek(Ident) {
            let unknown: Ident = input.parse()?;
            Err(syn::Error::new(
                unknown.span(),
                format!("unknown #[intercept] argument `{unknown}`; expected one of {ENTRIES}"),
            ))
        } else {
            Err(lookahead.error())
        }
    }
}

// public(CreateUser, Health) | public(*)
fn parse_public(input: ParseStream) -> syn::Result<Public> {
    let kw = input.parse::<Ident>()?;
    let content = parenthesized(input, &kw)?;
    let rpcs = if content.peek(Token![*]) {
        content.parse::<Token![*]>()?;
        Rpcs::All
    } else {
        Rpcs::Named(idents(&content)?)
    };
    expect_end(&content)?;
    Ok(Public { kw, rpcs })
}

// auth(self.verifier) | auth(self.verifier, GetUser, ..)
fn parse_auth(input: ParseStream) -> syn::Result<Auth> {
    let kw = input.parse::<Ident>()?;
    let content = parenthesized(input, &kw)?;
    let verifier = content.parse()?;
    let rpcs = if content.parse::<Option<Token![,]>>()?.is_some() {
        idents(&content)?
    } else {
        Vec::new()
    };
    expect_end(&content)?;
    Ok(Auth { kw, verifier, rpcs })
}

// limit(key = value, ..) | limit(ListUsers, .., key = value, ..) | limit(ListUsers)
fn parse_limit(input: ParseStream) -> syn::Result<Limit> {
    let kw = input.parse::<Ident>()?;
    let content = parenthesized(input, &kw)?;
    let mut rpcs = Vec::new();
    let mut keys = Vec::new();
    let mut shared: Option<Shared> = None;
    while !content.is_empty() {
        let name: Ident = content.parse()?;
        if name == "shared" && !content.peek(Token![=]) {
            return Err(syn::Error::new(
                name.span(),
                "`shared` names the backend that keeps this `limit(..)`'s call rates: `shared = self.rates`",
            ));
        }
        if name == "shared" {
            content.parse::<Token![=]>()?;
            let backend = content.parse()?;
            if shared.is_some() {
                return Err(syn::Error::new(
                    name.span(),
                    "`shared` is set twice in this `limit(..)`",
                ));
            }
            shared = Some(Shared { kw: name, backend });
        } else if content.peek(Token![=]) {
            content.parse::<Token![=]>()?;
            let value = content.parse()?;
            keys.push(LimitKey { name, value });
        } else if keys.is_empty() {
            rpcs.push(name);
        } else {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "expected `{name} = <value>`: RPC names come first in `limit(..)`, then `key = value` pairs"
                ),
            ));
        }
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    Ok(Limit {
        kw,
        rpcs,
        keys,
        shared,
    })
}

// 10_000 | LIST_USERS_MAX | crate::limits::MAX | none | delay | reject
impl Parse for LimitValue {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(LitInt) {
            Ok(LimitValue::Int(input.parse()?))
        } else if input.peek(Ident)
            || input.peek(Token![::])
            || input.peek(Token![crate])
            || input.peek(Token![self])
            || input.peek(Token![super])
        {
            Ok(LimitValue::Path(input.call(syn::Path::parse_mod_style)?))
        } else {
            // `none`, and the words some key takes, from the limit-key table.
            let words = tonic_intercept_spec::LIMIT_KEYS
                .iter()
                .flat_map(|k| match k.value {
                    tonic_intercept_spec::ValueType::Word(words) => words,
                    _ => &[][..],
                });
            let mut words: Vec<String> = std::iter::once(&"none")
                .chain(words)
                .map(|w| format!("`{w}`"))
                .collect();
            let last = words.pop().unwrap_or_default();
            Err(input.error(format!(
                "expected a number, a constant, {} or {last}",
                words.join(", ")
            )))
        }
    }
}

// hook(Audit) (a unit struct) | hook(self.audit: Audit), either followed by RPC names
fn parse_hook(input: ParseStream) -> syn::Result<Hook> {
    let kw = input.parse::<Ident>()?;
    let content = parenthesized(input, &kw)?;
    let value: Expr = content.parse()?;
    let ty = if content.parse::<Option<Token![:]>>()?.is_some() {
        content.parse()?
    } else if let Expr::Path(path) = &value {
        // A unit struct is its own value: `hook(Audit)`.
        Type::Path(syn::TypePath {
            qself: None,
            path: path.path.clone(),
        })
    } else {
        return Err(syn::Error::new_spanned(
            &value,
            "name the hook's type: `hook(self.audit: Audit)`; a unit struct can be written alone: `hook(Audit)`",
        ));
    };
    let rpcs = if content.parse::<Option<Token![,]>>()?.is_some() {
        idents(&content)?
    } else {
        Vec::new()
    };
    expect_end(&content)?;
    Ok(Hook { value, ty, rpcs })
}

// roles("admin", "ops", DeleteUser, ..) | roles(PurgeUsers)
fn parse_roles(input: ParseStream) -> syn::Result<Roles> {
    let kw = input.parse::<Ident>()?;
    let content = parenthesized(input, &kw)?;
    let mut roles = Vec::new();
    while content.peek(syn::LitStr) {
        roles.push(content.parse()?);
        if content.parse::<Option<Token![,]>>()?.is_none() {
            break;
        }
    }
    let rpcs = idents(&content)?;
    expect_end(&content)?;
    Ok(Roles { kw, roles, rpcs })
}

// trace | trace(self.trace) | trace(self.trace: TraceCalls<R>), either followed by RPC names
fn parse_trace(input: ParseStream) -> syn::Result<Trace> {
    let kw = input.parse::<Ident>()?;
    if !input.peek(syn::token::Paren) {
        let (value, ty, rpcs) = (None, None, Vec::new());
        return Ok(Trace {
            kw,
            value,
            ty,
            rpcs,
        });
    }
    let content = parenthesized(input, &kw)?;
    let value = Some(content.parse()?);
    let ty = if content.parse::<Option<Token![:]>>()?.is_some() {
        Some(content.parse()?)
    } else {
        None
    };
    let rpcs = rest_idents(&content)?;
    Ok(Trace {
        kw,
        value,
        ty,
        rpcs,
    })
}

// recover | recover(Rpc, ..) | validate | validate(Rpc, ..)
fn parse_switch(input: ParseStream) -> syn::Result<Switch> {
    let kw = input.parse::<Ident>()?;
    if !input.peek(syn::token::Paren) {
        let rpcs = Vec::new();
        return Ok(Switch { kw, rpcs });
    }
    let content = parenthesized(input, &kw)?;
    let rpcs = idents(&content)?;
    expect_end(&content)?;
    if rpcs.is_empty() {
        return Err(syn::Error::new(
            kw.span(),
            format!("`{kw}()` names no RPC; write `{kw}` alone for every RPC"),
        ));
    }
    Ok(Switch { kw, rpcs })
}

fn parenthesized<'a>(
    input: ParseStream<'a>,
    kw: &Ident,
) -> syn::Result<syn::parse::ParseBuffer<'a>> {
    if !input.peek(syn::token::Paren) {
        return Err(syn::Error::new(kw.span(), format!("expected `{kw}(...)`")));
    }
    let content;
    syn::parenthesized!(content in input);
    Ok(content)
}

fn idents(input: ParseStream) -> syn::Result<Vec<Ident>> {
    Ok(Punctuated::<Ident, Token![,]>::parse_terminated(input)?
        .into_iter()
        .collect())
}

/// `, Rpc, ..` after a value, or nothing.
fn rest_idents(input: ParseStream) -> syn::Result<Vec<Ident>> {
    let rpcs = if input.parse::<Option<Token![,]>>()?.is_some() {
        idents(input)?
    } else {
        Vec::new()
    };
    expect_end(input)?;
    Ok(rpcs)
}

fn expect_end(input: ParseStream) -> syn::Result<()> {
    if input.is_empty() {
        Ok(())
    } else {
        Err(input.error("unexpected tokens; RPC names are separated by commas"))
    }
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::Args;

    #[test]
    fn a_value_that_is_no_value_lists_the_words() {
        let error = syn::parse2::<Args>(quote!(limit(GetUser, timeout_ms = "5s")))
            .err()
            .expect("a string is no limit value");
        assert_eq!(
            error.to_string(),
            "expected a number, a constant, `none`, `delay` or `reject`"
        );
    }
}
