//! [`AgentMetrics`] → Prometheus text exposition (version 0.0.4), with
//! `prometheus-client`'s encoder.
//!
//! The values already exist (the kernel counted them), so nothing is registered and
//! incremented: each render builds the metric families from the plain data, in a fixed
//! order, and hands them to the encoder through a [`Collector`]. Two renders of the same
//! data are byte-identical, which keeps the output testable and diffable.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::{AgentMetrics, LinkMetrics};

/// `Content-Type` of what [`render`] returns.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition of `metrics`, ready to serve with [`CONTENT_TYPE`].
pub fn render(metrics: &AgentMetrics) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Families(families(metrics))));
    let mut out = String::new();
    // Writing into a String cannot fail, and every family is well-formed by
    // construction; an error would leave a truncated body, which a scraper rejects.
    if let Err(error) = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry) {
        tracing::error!(%error, "encoding metrics failed");
    }
    out
}

/// Type of a family, as the encoder names it: counters get `_total`, infos `_info`.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge,
    Info,
}

#[derive(Clone, Copy, Debug)]
enum Value {
    Int(u64),
    Float(f64),
}

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
struct Family {
    /// Name without the `_total`/`_info` suffix the encoder adds.
    name: &'static str,
    help: &'static str,
    kind: Kind,
    samples: Vec<(Labels, Value)>,
}

impl Family {
    fn new(name: &'static str, help: &'static str, kind: Kind) -> Family {
        Family { name, help, kind, samples: Vec::new() }
    }

    fn push(&mut self, labels: Labels, value: Value) {
        self.samples.push((labels, value));
    }
}

#[derive(Debug)]
struct Families(Vec<Family>);

impl Collector for Families {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for family in &self.0 {
            // A family without samples would be a HELP/TYPE pair describing nothing.
            if family.samples.is_empty() {
                continue;
            }
            let metric_type = match family.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Info => MetricType::Info,
            };
            let mut metric = encoder.encode_descriptor(family.name, family.help, None, metric_type)?;
            for (labels, value) in &family.samples {
                match (family.kind, *value) {
                    (Kind::Info, _) => metric.encode_info(labels)?,
                    (Kind::Counter, Value::Int(v)) => {
                        ConstCounter::new(v).encode(metric.encode_family(labels)?)?
                    }
                    (Kind::Counter, Value::Float(v)) => {
                        ConstCounter::new(v).encode(metric.encode_family(labels)?)?
                    }
                    (Kind::Gauge, Value::Int(v)) => {
                        ConstGauge::new(v).encode(metric.encode_family(labels)?)?
                    }
                    (Kind::Gauge, Value::Float(v)) => {
                        ConstGauge::new(v).encode(metric.encode_family(labels)?)?
                    }
                }
            }
        }
        Ok(())
    }
}

fn link_labels(l: &LinkMetrics) -> Labels {
    vec![("interface", l.interface_id.clone()), ("link", l.link.clone())]
}

fn with(mut labels: Labels, more: &[(&'static str, &str)]) -> Labels {
    labels.extend(more.iter().map(|(k, v)| (*k, (*v).to_owned())));
    labels
}

/// The families, in the order they are exposed.
fn families(m: &AgentMetrics) -> Vec<Family> {
    use Kind::{Counter, Gauge, Info};

    let mut packets = Family::new(
        "sgmirror_packets",
        "Packets judged by the sgmirror programs, by interface, link, direction, verdict and reason.",
        Counter,
    );
    let mut bytes = Family::new(
        "sgmirror_bytes",
        "Bytes (whole frames) judged by the sgmirror programs, by interface, link, direction, verdict and reason.",
        Counter,
    );
    let mut rule_hits = Family::new(
        "sgmirror_rule_hits",
        "Packets allowed by each security-group rule (the first packet of each tracked flow, every packet of an untracked one).",
        Counter,
    );
    let mut attach = Family::new(
        "sgmirror_attach_mode",
        "How each program is attached: hook xdp (native, generic, ...) or tc (tcx, clsact).",
        Info,
    );
    let mut enforcement = Family::new(
        "sgmirror_enforcement_mode",
        "Enforcement mode of each link: 1 for the mode in force (enforce or audit), 0 for the other.",
        Gauge,
    );
    let mut generation = Family::new(
        "sgmirror_policy_generation",
        "Policy generation applied to each link (1 = the first).",
        Gauge,
    );
    let mut applied = Family::new(
        "sgmirror_policy_applied_timestamp_seconds",
        "When the policy generation in force on each link was applied, in seconds since the Unix epoch.",
        Gauge,
    );
    let mut flows = Family::new("sgmirror_flows", "Entries in each link's flow table.", Gauge);
    let mut capacity =
        Family::new("sgmirror_flow_table_capacity", "Size of each link's flow table, in entries.", Gauge);
    let mut evictions = Family::new(
        "sgmirror_flow_evictions",
        "Flows evicted from a full flow table (least recently used first).",
        Counter,
    );
    let mut suppressed = Family::new(
        "sgmirror_drop_records_suppressed",
        "Drop records the kernel did not emit because of its per-CPU rate limit.",
        Counter,
    );
    let mut lost = Family::new(
        "sgmirror_drop_records_lost",
        "Drop records lost because the ring buffer was full.",
        Counter,
    );

    for l in &m.links {
        let base = link_labels(l);
        for c in &l.counters {
            let labels = with(
                base.clone(),
                &[("direction", c.direction), ("verdict", c.verdict), ("reason", c.reason)],
            );
            packets.push(labels.clone(), Value::Int(c.packets));
            bytes.push(labels, Value::Int(c.bytes));
        }
        for h in &l.rule_hits {
            let labels = vec![
                ("rule", h.rule.clone()),
                ("group", h.group_id.clone()),
                ("interface", l.interface_id.clone()),
                ("direction", h.direction.to_owned()),
            ];
            rule_hits.push(labels, Value::Int(h.packets));
        }
        attach.push(with(base.clone(), &[("hook", "xdp"), ("mode", &l.xdp_mode)]), Value::Int(1));
        attach.push(with(base.clone(), &[("hook", "tc"), ("mode", &l.tc_mode)]), Value::Int(1));
        for mode in ["enforce", "audit"] {
            enforcement.push(with(base.clone(), &[("mode", mode)]), Value::Int(u64::from(l.mode == mode)));
        }
        generation.push(base.clone(), Value::Int(l.generation));
        applied.push(base.clone(), Value::Float(l.applied_unix_seconds));
        flows.push(base.clone(), Value::Int(l.flows));
        capacity.push(base.clone(), Value::Int(l.flow_capacity));
        evictions.push(base.clone(), Value::Int(l.flows_evicted));
        suppressed.push(base.clone(), Value::Int(l.drop_records_suppressed));
        lost.push(base, Value::Int(l.drop_records_lost));
    }

    let mut refresh = Family::new(
        "sgmirror_last_successful_refresh_timestamp_seconds",
        "When the policy source last answered successfully, in seconds since the Unix epoch (0: never).",
        Gauge,
    );
    refresh.push(Vec::new(), Value::Float(m.last_refresh_success_unix_seconds));
    let mut source_errors = Family::new(
        "sgmirror_source_errors",
        "Failures of the policy source since the agent started, by kind.",
        Counter,
    );
    for (kind, n) in &m.source_errors {
        source_errors.push(vec![("kind", kind.clone())], Value::Int(*n));
    }
    let mut log_lines = Family::new(
        "sgmirror_drop_log_lines",
        "Drop-log lines written (flow lines and SKIPDATA lines).",
        Counter,
    );
    log_lines.push(Vec::new(), Value::Int(m.drop_log_lines));
    let mut log_suppressed = Family::new(
        "sgmirror_drop_log_lines_suppressed",
        "Drop-log flows summed into a SKIPDATA line because of the drop log's line limit.",
        Counter,
    );
    log_suppressed.push(Vec::new(), Value::Int(m.drop_log_lines_suppressed));
    let mut build = Family::new("sgmirror_build", "The running sgmirror's version; always 1.", Info);
    build.push(vec![("version", env!("CARGO_PKG_VERSION").to_owned())], Value::Int(1));

    vec![
        packets,
        bytes,
        rule_hits,
        attach,
        enforcement,
        generation,
        applied,
        flows,
        capacity,
        evictions,
        suppressed,
        lost,
        refresh,
        source_errors,
        log_lines,
        log_suppressed,
        build,
    ]
}
