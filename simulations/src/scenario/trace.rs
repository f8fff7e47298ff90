//! Traces: real messages read from a CSV file.

use std::path::Path;
use std::time::Duration;

use super::{ScenarioError, TraceMessage};

/// Reads `time_s,sender,recipient` rows (a header row is allowed).
pub(super) fn load_trace(path: &Path, clients: u32) -> Result<Vec<TraceMessage>, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line_no = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || (n == 0 && line.starts_with("time")) {
            continue;
        }
        let bad = |reason: String| ScenarioError::Trace {
            path: path.to_owned(),
            line: line_no,
            reason,
        };
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [time, sender, recipient] = fields[..] else {
            return Err(bad(format!(
                "expected 3 fields time_s,sender,recipient, got {}",
                fields.len()
            )));
        };
        let at: f64 = time
            .parse()
            .map_err(|_| bad(format!("field time_s: not a number: {time:?}")))?;
        if !(at.is_finite() && (0.0..=1e9).contains(&at)) {
            return Err(bad(format!(
                "field time_s: must be from 0 to 1e9, got {at}"
            )));
        }
        let client = |name: &str, v: &str| -> Result<u32, ScenarioError> {
            let c: u32 = v
                .parse()
                .map_err(|_| bad(format!("field {name}: not a client index: {v:?}")))?;
            if c >= clients {
                return Err(bad(format!(
                    "field {name}: client {c} does not exist (count is {clients})"
                )));
            }
            Ok(c)
        };
        out.push(TraceMessage {
            at: Duration::from_secs_f64(at),
            sender: client("sender", sender)?,
            recipient: client("recipient", recipient)?,
        });
    }
    out.sort_by_key(|m| m.at);
    Ok(out)
}
