//! Stream and message limits on the user directory: `ImportUsers` takes at most
//! `max_messages_in` records of at most `max_message_bytes` each, and `ListUsers` streams
//! at most `max_messages_out` users at `messages_per_second_out`.

use std::time::{Duration, Instant};

use tokio_stream::StreamExt;
use tonic::{Code, Status};
use tonic_intercept_examples::pb::ListUsersRequest;
use tonic_intercept_examples::users::{
    IMPORT_USERS_MAX, LIST_USERS_MAX, LIST_USERS_PER_SECOND, MAX_RECORD_BYTES,
};
use tonic_intercept_examples::{ADA_TOKEN, Services, with_token};

use crate::support::{Users, code_name, ensure, expect_code, ok, record};

/// Fills the directory (more users than `ListUsers` may stream); the handler counts bad
/// records instead of failing the batch.
pub(crate) async fn import_counts_rejects(
    users: &mut Users,
    server: &Services,
) -> Result<String, String> {
    let before = server.users.count();
    let batch: Vec<_> = (1..=64)
        .map(|i| match i {
            16 => record("", "anon@example.com"),
            32 => record("Grace", "grace-at-example.com"),
            48 => record("Edsger", "edsger@"),
            64 => record("\t", ""),
            _ => record(&format!("user{i:02}"), &format!("user{i:02}@example.com")),
        })
        .collect();
    let request = with_token(tokio_stream::iter(batch), ADA_TOKEN);
    let summary = ok("ImportUsers", users.import_users(request).await)?.into_inner();
    ensure!(
        (summary.accepted, summary.rejected) == (60, 4),
        "ImportUsers: expected 60 accepted and 4 rejected, got {summary:?}"
    );
    ensure!(
        server.users.count() == before + 60,
        "ImportUsers stored {} users, expected 60",
        server.users.count() - before
    );
    Ok(format!(
        "ImportUsers of 64 records: {} accepted, {} bad ones rejected without failing the batch",
        summary.accepted, summary.rejected
    ))
}

pub(crate) async fn import_over_max_messages(
    users: &mut Users,
    server: &Services,
) -> Result<String, String> {
    let before = server.users.count();
    let sent = IMPORT_USERS_MAX + 1;
    let batch: Vec<_> = (0..sent)
        .map(|i| record(&format!("bulk{i}"), &format!("bulk{i}@example.com")))
        .collect();
    let result = users
        .import_users(with_token(tokio_stream::iter(batch), ADA_TOKEN))
        .await;
    expect_code(
        "ImportUsers over max_messages_in",
        result,
        Code::ResourceExhausted,
    )?;
    ensure!(
        server.users.count() == before,
        "a refused batch stored users"
    );
    Ok(format!(
        "ImportUsers of {sent} records (max_messages_in = {IMPORT_USERS_MAX}): RESOURCE_EXHAUSTED, nothing stored"
    ))
}

pub(crate) async fn import_over_max_bytes(users: &mut Users) -> Result<String, String> {
    let huge = record(&"x".repeat(MAX_RECORD_BYTES as usize), "huge@example.com");
    let size = prost::Message::encoded_len(&huge);
    let result = users
        .import_users(with_token(tokio_stream::iter([huge]), ADA_TOKEN))
        .await;
    expect_code(
        "ImportUsers over max_message_bytes",
        result,
        Code::ResourceExhausted,
    )?;
    Ok(format!(
        "ImportUsers record of {size} bytes (max_message_bytes = {MAX_RECORD_BYTES}): RESOURCE_EXHAUSTED"
    ))
}

pub(crate) async fn list_cut_and_paced(
    users: &mut Users,
    server: &Services,
) -> Result<[String; 2], String> {
    let stored = server.users.count();
    ensure!(
        stored as u64 > LIST_USERS_MAX,
        "only {stored} users stored: too few to reach the ListUsers limit"
    );
    let started = Instant::now();
    let request = with_token(ListUsersRequest::default(), ADA_TOKEN);
    let mut stream = ok("ListUsers", users.list_users(request).await)?.into_inner();
    let mut received = 0;
    let end = loop {
        match stream.next().await {
            Some(Ok(_)) => received += 1,
            Some(Err(status)) => break Some(status),
            None => break None,
        }
    };
    let elapsed = started.elapsed();
    let code = end.as_ref().map_or(Code::Ok, Status::code);
    ensure!(
        code == Code::ResourceExhausted && received == LIST_USERS_MAX,
        "ListUsers: expected RESOURCE_EXHAUSTED after {LIST_USERS_MAX} users, got {} after {received}",
        code_name(code)
    );
    // The first message passes at once, every later one waits its interval.
    let minimum = Duration::from_secs(received - 1) / LIST_USERS_PER_SECOND;
    ensure!(
        elapsed >= minimum,
        "ListUsers streamed {received} users in {elapsed:?}, faster than {LIST_USERS_PER_SECOND}/s allows"
    );
    Ok([
        format!("ListUsers cut at {received} of {stored} users: RESOURCE_EXHAUSTED"),
        format!(
            "ListUsers paced at {LIST_USERS_PER_SECOND}/s: {received} users took {:.2}s (the rate implies ≥ {:.2}s)",
            elapsed.as_secs_f64(),
            minimum.as_secs_f64()
        ),
    ])
}
