//! The directory itself: users by id, and what makes a user record valid.

use std::collections::BTreeMap;
use std::sync::{PoisonError, RwLock, RwLockWriteGuard};

use tonic::Status;

use crate::Caller;
use crate::pb::{User, UserUpdate};

pub(super) fn write(directory: &RwLock<Directory>) -> RwLockWriteGuard<'_, Directory> {
    directory.write().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
pub(super) struct Directory {
    last_id: u64,
    pub(super) users: BTreeMap<u64, User>,
    /// The most users it holds: memory stays bounded whoever signs up.
    pub(super) max_users: usize,
}

impl Directory {
    pub(super) fn new(max_users: usize) -> Self {
        Self {
            last_id: 0,
            users: BTreeMap::new(),
            max_users,
        }
    }

    /// `RESOURCE_EXHAUSTED` unless `n` more users fit.
    pub(super) fn room_for(&self, n: usize) -> Result<(), Status> {
        let held = self.users.len();
        if held.saturating_add(n) <= self.max_users {
            return Ok(());
        }
        let max = self.max_users;
        Err(Status::resource_exhausted(if n == 1 {
            format!("the user directory is full: it holds at most {max} users")
        } else {
            format!(
                "the user directory is full: it holds {held} of at most {max} users, \
                 {n} more do not fit; nothing was stored"
            )
        }))
    }

    /// Stores a new user, if there is room.
    pub(super) fn insert(&mut self, name: String, email: String) -> Result<User, Status> {
        self.room_for(1)?;
        Ok(self.insert_unchecked(name, email))
    }

    /// Stores a new user; the caller made sure there is room ([`Directory::room_for`]).
    pub(super) fn insert_unchecked(&mut self, name: String, email: String) -> User {
        self.last_id += 1;
        let user = User {
            id: self.last_id,
            name,
            email,
            updated_by: String::new(),
        };
        self.users.insert(user.id, user.clone());
        user
    }

    pub(super) fn update(&mut self, update: UserUpdate, by: &Caller) -> Result<User, Status> {
        let user = self
            .users
            .get_mut(&update.id)
            .ok_or_else(|| Status::not_found(format!("no user #{}", update.id)))?;
        let name = if update.name.is_empty() {
            &user.name
        } else {
            &update.name
        };
        let email = if update.email.is_empty() {
            &user.email
        } else {
            &update.email
        };
        if let Some(problem) = invalid(name, email) {
            return Err(Status::invalid_argument(problem));
        }
        if !update.name.is_empty() {
            user.name = update.name;
        }
        if !update.email.is_empty() {
            user.email = update.email;
        }
        user.updated_by.clone_from(&by.name);
        Ok(user.clone())
    }
}

/// Why a user record is refused, or `None` when it is fine.
pub(super) fn invalid(name: &str, email: &str) -> Option<&'static str> {
    if name.trim().is_empty() {
        return Some("name must not be empty");
    }
    let valid_email = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.contains('@')
            && domain.split('.').count() >= 2
            && domain.split('.').all(|label| !label.is_empty())
    });
    if !valid_email {
        return Some("email must look like `name@example.com`");
    }
    None
}
