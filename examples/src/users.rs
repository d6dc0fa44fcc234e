//! `users.v1.UserService`: an in-memory user directory.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};
use tonic_intercept::{Call, CallOutcome, Hook, StaticTokens, intercept, metrics::ServiceMetrics};

use crate::pb::user_service_intercept as rpc;
use crate::pb::{
    CreateUserRequest, GetUserRequest, ImportSummary, ListUsersRequest, User, UserUpdate,
};
use crate::{Caller, answer_each};

mod directory;

use directory::{Directory, invalid, write};

/// The user directory service.
#[derive(Debug, Clone)]
pub struct Users {
    directory: Arc<RwLock<Directory>>,
    tokens: StaticTokens<Caller>,
    audit: Audit,
    metrics: ServiceMetrics<rpc::Service>,
}

impl Users {
    /// An empty directory of at most [`MAX_USERS`] users, accepting `tokens` for every
    /// RPC but `CreateUser`, counting its calls in `metrics` (from
    /// [`ServerMetrics::service`](tonic_intercept::ServerMetrics::service)).
    pub fn new(tokens: StaticTokens<Caller>, metrics: ServiceMetrics<rpc::Service>) -> Self {
        Self {
            directory: Arc::new(RwLock::new(Directory::new(MAX_USERS))),
            tokens,
            audit: Audit::default(),
            metrics,
        }
    }

    /// Holds at most `max` users from now on (every clone shares the directory): past it,
    /// `CreateUser` and `ImportUsers` answer `RESOURCE_EXHAUSTED`. Users already stored
    /// stay.
    pub fn set_max_users(&self, max: usize) {
        self.write().max_users = max;
    }

    /// The hook that watches `CreateUser`.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// How many users the directory holds.
    pub fn count(&self) -> usize {
        self.read().users.len()
    }

    fn read(&self) -> RwLockReadGuard<'_, Directory> {
        self.directory
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Directory> {
        write(&self.directory)
    }
}

/// What the [`Audit`] hook counted.
#[derive(Debug, Default)]
pub struct AuditLog {
    /// `CreateUser` requests seen.
    pub requests: AtomicU64,
    /// Requests the hook refused before the handler ran.
    pub refused: AtomicU64,
    /// Calls that ended with a created user.
    pub created: AtomicU64,
}

/// A typed hook on `CreateUser`: counts sign-ups and refuses empty names.
#[derive(Debug, Clone, Default)]
pub struct Audit {
    log: Arc<AuditLog>,
}

impl Audit {
    /// The counters, shared by every clone of this hook.
    pub fn log(&self) -> &AuditLog {
        &self.log
    }
}

impl Hook<rpc::CreateUser> for Audit {
    fn on_request(&self, _: &Call, request: &CreateUserRequest) -> Result<(), Status> {
        self.log.requests.fetch_add(1, Ordering::Relaxed);
        if request.name.trim().is_empty() {
            self.log.refused.fetch_add(1, Ordering::Relaxed);
            return Err(Status::invalid_argument("name must not be empty"));
        }
        Ok(())
    }

    fn on_finish(&self, _: &Call, outcome: &CallOutcome) {
        if outcome.code == tonic::Code::Ok {
            self.log.created.fetch_add(1, Ordering::Relaxed);
        }
    }
}

// The limits below, as constants that clients and the demo read too.

/// The longest `ListUsers` stream; page with `name_prefix` for more.
pub const LIST_USERS_MAX: u64 = 50;
/// How many users a second `ListUsers` streams.
pub const LIST_USERS_PER_SECOND: u32 = 20;
/// The most records one `ImportUsers` batch may hold.
pub const IMPORT_USERS_MAX: u64 = 100;
/// The largest encoded record `ImportUsers` and `UserUpdates` accept.
pub const MAX_RECORD_BYTES: u64 = 256;
/// How many `CreateUser` calls a second one peer address may make (in bursts of as many):
/// signing up is public, so there is no identity to count calls per.
pub const CREATE_USER_PER_PEER_PER_SECOND: u32 = 5;
/// The most users the in-memory directory holds (see [`Users::set_max_users`]): past
/// it, sign-ups and imports answer `RESOURCE_EXHAUSTED`.
pub const MAX_USERS: usize = 10_000;

#[intercept(
    // A panic in a handler, hook or stream answers INTERNAL and the server serves on.
    recover,
    // Every call in its span, with a "finished call" event.
    trace,
    metrics(self.metrics),
    public(CreateUser),
    auth(self.tokens),
    limit(timeout_ms = 5_000),
    // Public, so rated per peer address: a flood from one address is refused.
    limit(CreateUser, calls_per_second_per_peer = CREATE_USER_PER_PEER_PER_SECOND),
    limit(ListUsers, max_messages_out = LIST_USERS_MAX, messages_per_second_out = LIST_USERS_PER_SECOND, timeout_ms = 10_000),
    limit(ImportUsers, max_messages_in = IMPORT_USERS_MAX, max_message_bytes = MAX_RECORD_BYTES, timeout_ms = 30_000),
    // A live editing session lasts as long as the client wants.
    limit(UserUpdates, max_messages_in = 1_000, max_message_bytes = MAX_RECORD_BYTES, timeout_ms = none),
    hook(self.audit: Audit, CreateUser),
)]
#[tonic::async_trait]
impl crate::pb::user_service_server::UserService for Users {
    async fn create_user(
        &self,
        request: Request<CreateUserRequest>,
    ) -> Result<Response<User>, Status> {
        let CreateUserRequest { name, email } = request.into_inner();
        if let Some(problem) = invalid(&name, &email) {
            return Err(Status::invalid_argument(problem));
        }
        Ok(Response::new(self.write().insert(name, email)?))
    }

    async fn get_user(&self, request: Request<GetUserRequest>) -> Result<Response<User>, Status> {
        let id = request.into_inner().id;
        self.read()
            .users
            .get(&id)
            .cloned()
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("no user #{id}")))
    }

    type ListUsersStream = tokio_stream::Iter<std::vec::IntoIter<Result<User, Status>>>;

    async fn list_users(
        &self,
        request: Request<ListUsersRequest>,
    ) -> Result<Response<Self::ListUsersStream>, Status> {
        let prefix = request.into_inner().name_prefix;
        let users: Vec<_> = self
            .read()
            .users
            .values()
            .filter(|user| user.name.starts_with(&prefix))
            .cloned()
            .map(Ok)
            .collect();
        Ok(Response::new(tokio_stream::iter(users)))
    }

    async fn import_users(
        &self,
        request: Request<Streaming<CreateUserRequest>>,
    ) -> Result<Response<ImportSummary>, Status> {
        let mut records = request.into_inner();
        let mut valid = Vec::new();
        let mut rejected = 0;
        while let Some(record) = records.message().await? {
            match invalid(&record.name, &record.email) {
                None => valid.push(record),
                Some(_) => rejected += 1,
            }
        }
        // Stored only once the whole batch is in, so a batch cut by a limit stores nothing.
        let accepted = valid.len() as u64;
        let mut directory = self.write();
        directory.room_for(valid.len())?;
        for record in valid {
            directory.insert_unchecked(record.name, record.email);
        }
        Ok(Response::new(ImportSummary { accepted, rejected }))
    }

    type UserUpdatesStream = ReceiverStream<Result<User, Status>>;

    async fn user_updates(
        &self,
        request: Request<Streaming<UserUpdate>>,
    ) -> Result<Response<Self::UserUpdatesStream>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("no caller"))?;
        let directory = self.directory.clone();
        let updated = answer_each(request.into_inner(), move |update| {
            write(&directory).update(update, &caller)
        });
        Ok(Response::new(updated))
    }
}
