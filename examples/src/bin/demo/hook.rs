//! `hook(self.audit: Audit, CreateUser)`: a typed hook sees each `CreateUser` request
//! and may refuse it before the handler runs.

use std::sync::atomic::Ordering;

use tonic::Code;
use tonic_intercept_examples::Services;

use crate::support::{Users, ensure, expect_code, record};

pub(crate) async fn hook_refuses_empty_name(
    users: &mut Users,
    server: &Services,
) -> Result<String, String> {
    let before = server.users.count();
    let result = users.create_user(record("  ", "nobody@example.com")).await;
    expect_code(
        "CreateUser with an empty name",
        result,
        Code::InvalidArgument,
    )?;
    let log = server.users.audit().log();
    let refused = log.refused.load(Ordering::Relaxed);
    ensure!(
        refused == 1,
        "the Audit hook counted {refused} refusals, expected 1"
    );
    ensure!(
        server.users.count() == before,
        "the handler ran: the directory grew"
    );
    Ok(
        "Audit hook refused CreateUser with an empty name: INVALID_ARGUMENT, handler skipped"
            .into(),
    )
}
