//! Read-your-writes: `?after=<position>` on any read waits until the projections have
//! applied the log up to that position.
//!
//! The consistency model: commands are appended to the fact log and answered `202` with
//! the position of the appended fact (`after`, `PARTITION:OFFSET`); reads come from the
//! projections, which apply the log asynchronously and are therefore eventually
//! consistent. A read carrying `?after=<position>` is answered only once the projector's
//! checkpoint for that partition has moved past the offset — so it reflects the command
//! and everything before it in that partition — or, after
//! [`ApiState::read_your_writes_timeout`](crate::ApiState), with `503` and `Retry-After`.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use sentinel_log::Position;

use crate::{ApiError, ApiState};

/// How often the checkpoint is polled while waiting.
const POLL: Duration = Duration::from_millis(20);

/// The text form of a position, as returned in a command's `after` field.
pub fn position_token(p: Position) -> String {
    format!("{}:{}", p.partition, p.offset)
}

/// Parses `PARTITION:OFFSET` (or a bare `OFFSET` for partition 0).
pub fn parse_position(raw: &str) -> Result<Position, ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "after must be a position PARTITION:OFFSET as returned by a command, not {raw:?}"
        ))
    };
    let (partition, offset) = match raw.split_once(':') {
        Some((p, o)) => (p.parse::<i32>().map_err(|_| bad())?, o),
        None => (0, raw),
    };
    let offset = offset.parse::<i64>().map_err(|_| bad())?;
    if partition < 0 || offset < 0 {
        return Err(bad());
    }
    Ok(Position { partition, offset })
}

fn after_param(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == "after")
        .map(|(_, v)| v)
}

/// Middleware: holds reads carrying `?after=` until the projections caught up.
pub(crate) async fn read_your_writes(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if let Some(raw) = after_param(request.uri().query()) {
        // Percent-encoded ':' is accepted too.
        let raw = raw.replace("%3A", ":").replace("%3a", ":");
        let position = parse_position(&raw)?;
        wait_for(&state, position).await?;
    }
    Ok(next.run(request).await)
}

/// Waits until the projector's checkpoint of `position.partition` is past
/// `position.offset`, up to the state's bound.
///
/// # Errors
///
/// [`ApiError::NotCaughtUp`] after the bound; store errors.
pub async fn wait_for(state: &ApiState, position: Position) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + state.read_your_writes_timeout();
    loop {
        let reached = state
            .store()
            .checkpoints(state.projection(), sentinel_projections::EVENTS_TOPIC)
            .await?
            .into_iter()
            .any(|c| c.partition == position.partition && c.next_offset > position.offset);
        if reached {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::NotCaughtUp {
                after: position_token(position),
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_garbage_is_refused() {
        let p = Position {
            partition: 3,
            offset: 42,
        };
        assert_eq!(parse_position(&position_token(p)).expect("parse"), p);
        assert_eq!(
            parse_position("7").expect("bare"),
            Position {
                partition: 0,
                offset: 7
            }
        );
        for bad in ["", "x", "1:", ":1", "-1:2", "1:-2", "1:2:3"] {
            assert!(parse_position(bad).is_err(), "{bad}");
        }
        assert_eq!(after_param(Some("limit=2&after=0:5")), Some("0:5"));
        assert_eq!(after_param(Some("limit=2")), None);
    }
}
