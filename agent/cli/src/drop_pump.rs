//! Moves drop records from the kernel's ring buffers into the drop log: read every
//! loop turn (so the buffers never fill while the agent is healthy), aggregated per
//! flow, written once per interval.

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};

use crate::{
    args::DropLogArgs,
    droplog::{Aggregator, Config, Sink},
    enforcer::Enforcer,
};

/// Most records taken from one link's ring buffer per loop turn, so one flooded link
/// cannot starve the loop.
const MAX_RECORDS_PER_TURN: usize = 16_384;

/// The drop log of a running agent.
pub struct DropPump {
    aggregator: Aggregator,
    sink: Sink,
}

impl DropPump {
    /// `None` when the log is off.
    pub fn new(args: &DropLogArgs) -> Result<Option<DropPump>> {
        let sink = match args.drop_log.as_str() {
            "off" => return Ok(None),
            "stdout" => Sink::Stdout,
            "log" => Sink::Log,
            path => Sink::append(Path::new(path)).with_context(|| format!("opening the drop log {path}"))?,
        };
        let config = Config {
            interval: Duration::from_secs(args.drop_log_interval.max(1)),
            max_lines: args.drop_log_max_lines.max(1),
            account_id: args.account_id.clone(),
        };
        Ok(Some(DropPump { aggregator: Aggregator::new(config, std::time::SystemTime::now()), sink }))
    }

    /// Drains the ring buffers and writes the lines of a finished interval.
    pub fn turn(&mut self, enforcers: &mut [Enforcer]) {
        let now = std::time::SystemTime::now();
        for e in enforcers.iter_mut() {
            match e.read_drop_records(MAX_RECORDS_PER_TURN) {
                Ok(records) => {
                    for record in &records {
                        self.aggregator.record(&e.binding.interface_id, record, now);
                    }
                }
                Err(err) => tracing::warn!(link = %e.binding.link.name, "reading drop records: {err:#}"),
            }
        }
        let lines = self.aggregator.tick(now);
        self.write(&lines);
    }

    /// Reads what is left and writes everything aggregated so far (on stop).
    pub fn finish(&mut self, enforcers: &mut [Enforcer]) {
        let now = std::time::SystemTime::now();
        for e in enforcers.iter_mut() {
            if let Ok(records) = e.read_drop_records(MAX_RECORDS_PER_TURN) {
                for record in &records {
                    self.aggregator.record(&e.binding.interface_id, record, now);
                }
            }
        }
        let lines = self.aggregator.drain();
        self.write(&lines);
    }

    fn write(&mut self, lines: &[crate::droplog::FlowLine]) {
        if let Err(e) = self.sink.write(lines) {
            tracing::warn!("writing {} drop-log lines to {}: {e}", lines.len(), self.sink.describe());
        }
    }

    /// Lines written so far.
    pub fn lines_written(&self) -> u64 {
        self.aggregator.lines_written()
    }

    /// Flows summed into SKIPDATA lines by the line limit.
    pub fn flows_suppressed(&self) -> u64 {
        self.aggregator.flows_suppressed()
    }
}
