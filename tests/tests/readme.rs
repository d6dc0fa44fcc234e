//! Keeps README.md honest.
//!
//! Every ```rust block of the README is compiled: its text must appear, line for line
//! (indentation aside), in this file, which compiles it inside a prepared context (a
//! stand-in for the generated `pb` module, which GitHub readers do not need to see), or
//! in a file that cargo compiles anyway (`examples/build.rs`). A ```text block right
//! after `<!-- stderr: PATH -->` must be that file's content, so the compiler error the
//! README shows is the one the trybuild suite checks.

// The README's example is compiled, never run; the stand-in `pb` is `pub` like the
// generated code it stands for.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// The generated code of a `users.v1.UserService` with two RPCs, as `tonic-build` and
/// `tonic-intercept-build` would emit it (the RPC types through the runtime's stand-in).
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct CreateUserRequest {
        #[prost(string, tag = "1")]
        pub name: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ListUsersRequest {
        #[prost(string, tag = "1")]
        pub name_prefix: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct User {
        #[prost(string, tag = "1")]
        pub name: String,
    }

    pub mod user_service_server {
        use tonic::{Request, Response, Status};

        #[tonic::async_trait]
        pub trait UserService: Send + Sync + 'static {
            async fn create_user(
                &self,
                request: Request<super::CreateUserRequest>,
            ) -> Result<Response<super::User>, Status>;

            type ListUsersStream: tokio_stream::Stream<Item = Result<super::User, Status>>
                + Send
                + 'static;

            async fn list_users(
                &self,
                request: Request<super::ListUsersRequest>,
            ) -> Result<Response<Self::ListUsersStream>, Status>;
        }
    }

    pub mod user_service_intercept {
        use super::{CreateUserRequest, ListUsersRequest, User};

        tonic_intercept::__doc_rpc!(
            CreateUser,
            "users.v1.UserService",
            "CreateUser",
            Unary,
            CreateUserRequest,
            User
        );
        tonic_intercept::__doc_rpc!(
            ListUsers,
            "users.v1.UserService",
            "ListUsers",
            ServerStreaming,
            ListUsersRequest,
            User
        );
    }
}

// ---- README: the attribute example, verbatim -------------------------------------------
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tonic_intercept::{Call, Hook, StaticTokens, intercept};

use pb::user_service_intercept::CreateUser;
use pb::{CreateUserRequest, ListUsersRequest, User};

/// Sees every `CreateUserRequest`, typed, before the handler does.
#[derive(Clone)]
struct RejectEmptyNames;

impl Hook<CreateUser> for RejectEmptyNames {
    fn on_request(&self, _call: &Call, request: &CreateUserRequest) -> Result<(), Status> {
        if request.name.is_empty() {
            return Err(Status::invalid_argument("name must not be empty"));
        }
        Ok(())
    }
}

struct Users {
    tokens: StaticTokens<String>,
}

#[intercept(
    public(CreateUser),                 // everything else needs a token
    auth(self.tokens),
    limit(timeout_ms = 2_000),          // every RPC
    limit(ListUsers, max_messages_out = 10_000, messages_per_second_out = 500),
    limit(CreateUser, calls_per_second = 100, max_in_flight = 64),
    hook(RejectEmptyNames, CreateUser),
    trace,                              // a span per call
    recover,                            // a panic ends one call with INTERNAL
)]
#[tonic::async_trait]
impl pb::user_service_server::UserService for Users {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        Ok(Response::new(User {
            name: request.into_inner().name,
        }))
    }

    type ListUsersStream = ReceiverStream<Result<User, Status>>;

    async fn list_users(
        &self,
        _: Request<ListUsersRequest>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let _ = tx.send(Ok(User { name: "ada".into() })).await;
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
// ---- end of the README's example --------------------------------------------------------

/// Files, relative to the repository root, that cargo compiles and README blocks may quote.
const COMPILED_ELSEWHERE: &[&str] = &["examples/build.rs"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repository")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// A fenced block: the info string after the opening fence, its body, and the line before.
struct Block {
    info: String,
    body: String,
    line: usize,
    preceded_by: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut lines = markdown.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((n, line)) = lines.next() {
        let trimmed = line.trim_start();
        if let Some(info) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let mut body = String::new();
            for (_, inner) in lines.by_ref() {
                if inner.trim_start().starts_with("```") {
                    break;
                }
                body.push_str(inner.get(indent..).unwrap_or(inner.trim_start()));
                body.push('\n');
            }
            found.push(Block {
                info: info.trim().to_string(),
                body,
                line: n + 1,
                preceded_by: previous.trim().to_string(),
            });
            previous = "";
            continue;
        }
        if !line.trim().is_empty() {
            previous = line;
        }
    }
    found
}

/// Lines without indentation, empty lines dropped: what "the same code" means here.
fn normalized(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn contains_lines(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_rust_block_of_the_readme_is_compiled() {
    let readme = read("README.md");
    let mut sources = vec![(
        "tests/tests/readme.rs",
        normalized(include_str!("readme.rs")),
    )];
    sources.extend(
        COMPILED_ELSEWHERE
            .iter()
            .map(|f| (*f, normalized(&read(f)))),
    );

    let rust: Vec<_> = blocks(&readme)
        .into_iter()
        .filter(|b| b.info == "rust" || b.info.starts_with("rust,"))
        .collect();
    assert!(
        !rust.is_empty(),
        "the README has no Rust block left to check"
    );
    for block in rust {
        assert_eq!(
            block.info, "rust",
            "README.md:{}: a Rust block is compiled, not `{}`",
            block.line, block.info
        );
        let lines = normalized(&block.body);
        assert!(
            sources.iter().any(|(_, s)| contains_lines(s, &lines)),
            "README.md:{}: this Rust block is compiled nowhere; copy it into \
             tests/tests/readme.rs (inside the prepared context) or quote a file listed in \
             COMPILED_ELSEWHERE:\n{}",
            block.line,
            block.body
        );
    }
}

#[test]
fn every_block_of_the_readme_names_its_language() {
    let readme = read("README.md");
    for block in blocks(&readme) {
        assert!(
            !block.info.is_empty(),
            "README.md:{}: a fence without a language (rust, text, sh, toml, proto)",
            block.line
        );
    }
}

#[test]
fn the_compiler_errors_in_the_readme_are_the_checked_ones() {
    let readme = read("README.md");
    let mut quoted = 0;
    for block in blocks(&readme) {
        let Some(path) = block
            .preceded_by
            .strip_prefix("<!-- stderr:")
            .and_then(|rest| rest.strip_suffix("-->"))
        else {
            continue;
        };
        let path = path.trim();
        assert_eq!(block.info, "text", "README.md:{}", block.line);
        assert_eq!(
            block.body.trim_end(),
            read(path).trim_end(),
            "README.md:{}: the error differs from {path}; copy the file's content again",
            block.line
        );
        quoted += 1;
    }
    assert!(quoted > 0, "the README shows no real compiler error");
}

#[test]
fn the_readme_stays_the_front_door() {
    let lines = read("README.md").lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; the reference belongs in runtime/docs/"
    );
}

#[test]
fn the_readme_links_to_files_that_exist() {
    let readme = read("README.md");
    let mut checked = 0;
    for (i, _) in readme.match_indices("](") {
        let rest = &readme[i + 2..];
        let Some(end) = rest.find(')') else { continue };
        let target = &rest[..end];
        if target.contains("://") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap_or(target);
        assert!(
            root().join(path).exists(),
            "README.md links to `{target}`, which does not exist"
        );
        checked += 1;
    }
    assert!(checked > 0);
}
