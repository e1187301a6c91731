//! Reads the benchmark's JSON lines out of a captured console: the guest's per-path
//! summaries and histogram chunks, and the hypervisor's per-stage trace sums.
//!
//! Each kind of line is trusted only from its speaker (`crate::attribution`): the
//! figures from the guest's lines (`[bench] ` under Sluice, every line on plain QEMU),
//! the stage sums from Sluice's (`sluice: `), so a guest can't forge Sluice's
//! breakdown. The JSON runs from the first `{` after the speaker's prefix to the end
//! of the line. Lines are at most 250 characters, so a
//! histogram arrives as several `{"path":..,"hist":[[lo,hi,count],..]}` chunks after its
//! path's summary.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::model::{Bucket, Path, StageSums, SEGMENTS};
use crate::attribution::{split, Host, Speaker};

/// A guest summary line.
#[derive(Deserialize)]
struct Summary {
    path: String,
    phase: u32,
    unit: String,
    n: u64,
    min: u64,
    p50: u64,
    p99: u64,
    max: u64,
    mean: f64,
}

/// A guest histogram chunk.
#[derive(Deserialize)]
struct HistChunk {
    path: String,
    hist: Vec<(u64, u64, u64)>,
}

/// A hypervisor `"trace":"stages"` line; `vm` and `cpu` are not needed.
#[derive(Deserialize)]
struct Stages {
    phase: u32,
    reason: String,
    exits: u64,
    ns: BTreeMap<String, u64>,
}

/// Exits and per-segment totals (in [`SEGMENTS`] order) for one (phase, reason).
type Sums = (u64, [u64; SEGMENTS.len()]);

/// Who may say what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trusted {
    /// The guest: its paths.
    Guest,
    /// Sluice: its stage sums.
    Sluice,
}

/// Who said `line` on `console`, as far as the benchmark trusts it, and what they said.
fn speaker<'l>(line: &'l str, host: Host, guest: &str) -> Option<(Trusted, &'l str)> {
    match host {
        Host::PlainQemu => Some((Trusted::Guest, line)),
        Host::Sluice => match split(line)? {
            (Speaker::Sluice, text) => Some((Trusted::Sluice, text)),
            (Speaker::Vm(name), text) if name == guest => Some((Trusted::Guest, text)),
            (Speaker::Vm(_), _) => None,
        },
    }
}

/// Collects the paths, in the order their summaries came, and the stage sums, summed over
/// CPUs, by ascending phase then reason, segments in [`SEGMENTS`] order, from the
/// lines of `console` on which VM `guest` ran the benchmark.
///
/// Lines without a `{`, lines that are not JSON objects, objects with neither a
/// `path` key nor `"trace":"stages"`, and objects from a speaker not trusted with
/// them are ignored.
///
/// # Errors
/// Naming the line: a `{"path"` or `{"trace":"stages"` line that does not parse or
/// lacks a field, a histogram chunk for a path with no summary before it, a bucket with
/// `lo >= hi`, a second summary for the same path, or a stage name not in [`SEGMENTS`].
pub fn parse_output(lines: &[String], host: Host, guest: &str) -> Result<(Vec<Path>, Vec<StageSums>)> {
    let mut paths: Vec<Path> = Vec::new();
    let mut sums: BTreeMap<(u32, String), Sums> = BTreeMap::new();
    for line in lines {
        let Some((who, said)) = speaker(line, host, guest) else { continue };
        let Some(start) = said.find('{') else { continue };
        let json = said[start..].trim_end();
        let claimed = match who {
            Trusted::Guest => json.starts_with(r#"{"path""#),
            Trusted::Sluice => json.starts_with(r#"{"trace":"stages""#),
        };
        if !claimed {
            continue;
        }
        let object = match serde_json::from_str::<Value>(json) {
            Ok(Value::Object(object)) => object,
            Ok(_) | Err(_) => bail!("malformed benchmark line: {line}"),
        };
        parse_object(object, &mut paths, &mut sums).with_context(|| format!("benchmark line: {line}"))?;
    }
    let stages = sums
        .into_iter()
        .map(|((phase, reason), (exits, ns))| StageSums {
            phase,
            reason,
            exits,
            ns: SEGMENTS.iter().zip(ns).map(|(name, ns)| (name.to_string(), ns)).collect(),
        })
        .collect();
    Ok((paths, stages))
}

/// Adds one JSON object's contribution, if it is one of ours.
fn parse_object(
    object: Map<String, Value>,
    paths: &mut Vec<Path>,
    sums: &mut BTreeMap<(u32, String), Sums>,
) -> Result<()> {
    if object.contains_key("path") {
        if object.contains_key("hist") {
            let chunk: HistChunk = serde_json::from_value(Value::Object(object))?;
            let Some(path) = paths.iter_mut().find(|p| p.name == chunk.path) else {
                bail!("histogram for path `{}` before its summary", chunk.path);
            };
            for (lo, hi, count) in chunk.hist {
                if lo >= hi {
                    bail!("empty bucket [{lo}, {hi})");
                }
                path.hist.push(Bucket { lo, hi, count });
            }
        } else {
            let s: Summary = serde_json::from_value(Value::Object(object))?;
            if paths.iter().any(|p| p.name == s.path) {
                bail!("second summary for path `{}`", s.path);
            }
            paths.push(Path {
                name: s.path,
                phase: s.phase,
                unit: s.unit,
                n: s.n,
                min: s.min,
                p50: s.p50,
                p99: s.p99,
                max: s.max,
                mean: s.mean,
                hist: Vec::new(),
            });
        }
    } else if object.get("trace").and_then(Value::as_str) == Some("stages") {
        let s: Stages = serde_json::from_value(Value::Object(object))?;
        let entry = sums.entry((s.phase, s.reason)).or_default();
        entry.0 += s.exits;
        for (name, ns) in s.ns {
            let Some(i) = SEGMENTS.iter().position(|&seg| seg == name) else {
                bail!("unknown stage `{name}`");
            };
            entry.1[i] += ns;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    fn seg(ns: [u64; 7]) -> Vec<(String, u64)> {
        SEGMENTS.iter().zip(ns).map(|(n, v)| (n.to_string(), v)).collect()
    }

    #[test]
    fn reads_summaries_histograms_and_stage_sums() {
        let out = lines(concat!(
            "Booting guest...\n",
            "[bench] {\"path\":\"hvc-null\",\"phase\":1,\"unit\":\"ns\",\"n\":1000,\"min\":320,\"p50\":336,",
            "\"p99\":400,\"max\":1200,\"mean\":340.5}\n",
            "[bench] {\"path\":\"hvc-null\",\"hist\":[[320,336,12],[336,352,900]]}\n",
            "sluice: {\"trace\":\"stages\",\"vm\":\"bench\",\"cpu\":1,\"phase\":3,\"reason\":\"mmio\",\"exits\":10,",
            "\"ns\":{\"decode\":1,\"return\":2}}\n",
            "[bench] {\"path\":\"hvc-null\",\"hist\":[[352,384,88]]}\n",
            "[bench] {\"path\":\"mmio-read\",\"phase\":3,\"unit\":\"ns\",\"n\":10,\"min\":1,\"p50\":2,",
            "\"p99\":3,\"max\":4,\"mean\":2}\n",
            "sluice: {\"trace\":\"cost\",\"cpu\":0,\"ns\":40}\n",
            "sluice: {\"trace\":\"exit\",\"reason\":\"hvc\"}\n",
            "sluice: {\"trace\":\"stages\",\"vm\":\"bench\",\"cpu\":0,\"phase\":3,\"reason\":\"mmio\",\"exits\":1000,",
            "\"ns\":{\"decode\":12000,\"dispatch\":3000,\"transport\":4000,\"backend\":50000,\"complete\":800,",
            "\"inject\":9000,\"return\":7000}}\n",
            "sluice: {\"trace\":\"stages\",\"vm\":\"bench\",\"cpu\":0,\"phase\":3,\"reason\":\"irq\",\"exits\":5,",
            "\"ns\":{\"inject\":50}}\n",
            "sluice: {\"trace\":\"stages\",\"vm\":\"bench\",\"cpu\":0,\"phase\":1,\"reason\":\"hvc\",\"exits\":1000,",
            "\"ns\":{\"decode\":7}}\n",
            "{not json at all\n",
            "[1,2,3]\n",
            "{\"other\":1}\n",
        ));
        let (paths, stages) = parse_output(&out, Host::Sluice, "bench").unwrap();
        assert_eq!(paths.len(), 2);
        let hvc = &paths[0];
        assert_eq!((hvc.name.as_str(), hvc.phase, hvc.unit.as_str()), ("hvc-null", 1, "ns"));
        assert_eq!((hvc.n, hvc.min, hvc.p50, hvc.p99, hvc.max), (1000, 320, 336, 400, 1200));
        assert_eq!(hvc.mean, 340.5);
        assert_eq!(
            hvc.hist,
            vec![
                Bucket { lo: 320, hi: 336, count: 12 },
                Bucket { lo: 336, hi: 352, count: 900 },
                Bucket { lo: 352, hi: 384, count: 88 },
            ]
        );
        assert_eq!(paths[1].name, "mmio-read");
        assert_eq!(paths[1].mean, 2.0);
        assert!(paths[1].hist.is_empty());
        assert_eq!(
            stages,
            vec![
                StageSums { phase: 1, reason: "hvc".into(), exits: 1000, ns: seg([7, 0, 0, 0, 0, 0, 0]) },
                StageSums { phase: 3, reason: "irq".into(), exits: 5, ns: seg([0, 0, 0, 0, 0, 50, 0]) },
                StageSums {
                    phase: 3,
                    reason: "mmio".into(),
                    exits: 1010,
                    ns: seg([12001, 3000, 4000, 50000, 800, 9000, 7002]),
                },
            ]
        );
    }

    #[test]
    fn empty_output_is_empty() {
        assert_eq!(parse_output(&lines("no json here\n"), Host::Sluice, "bench").unwrap(), (vec![], vec![]));
    }

    #[test]
    fn each_speaker_is_trusted_with_its_own_lines_only() {
        let stages = "{\"trace\":\"stages\",\"vm\":\"bench\",\"cpu\":0,\"phase\":1,\"reason\":\"hvc\",\"exits\":9,\"ns\":{}}";
        let summary = "{\"path\":\"p\",\"phase\":1,\"unit\":\"ns\",\"n\":1,\"min\":1,\"p50\":1,\"p99\":1,\"max\":1,\"mean\":1}";
        let forged = lines(&format!(
            "[bench] {stages}\n[bench] sluice: {stages}\n[other] {summary}\nsluice: {summary}\n{summary}\n[bench] {{\"path\""
        ));
        assert_eq!(parse_output(&forged[..5], Host::Sluice, "bench").unwrap(), (vec![], vec![]));
        // Not even a malformed line of a speaker not trusted with it fails the run.
        assert!(parse_output(&forged, Host::Sluice, "other").is_ok());
        // On plain QEMU every line is the guest's, and Sluice says nothing.
        let (paths, stages) =
            parse_output(&lines(&format!("{summary}\nsluice: {stages}")), Host::PlainQemu, "bench").unwrap();
        assert_eq!((paths.len(), stages.len()), (1, 0));
    }

    fn error_of(text: &str) -> String {
        let console = if text.starts_with('{') { Host::PlainQemu } else { Host::Sluice };
        format!("{:#}", parse_output(&lines(text), console, "bench").unwrap_err())
    }

    #[test]
    fn histogram_before_summary_is_an_error() {
        let e = error_of("[bench] {\"path\":\"hvc-null\",\"hist\":[[1,2,3]]}");
        assert!(e.contains("before its summary") && e.contains("[bench] {\"path\""), "{e}");
    }

    #[test]
    fn malformed_claimed_lines_are_errors() {
        let e = error_of("[bench] {\"path\":\"hvc-null\",\"phase\":1,\"unit\":\"ns\",\"n\":1000,\"mi");
        assert!(e.contains("malformed") && e.contains("\"mi"), "{e}");
        let e = error_of("{\"path\":\"hvc-null\",\"phase\":1}");
        assert!(e.contains("missing field") && e.contains("{\"path\":\"hvc-null\",\"phase\":1}"), "{e}");
        let e =
            error_of("sluice: {\"trace\":\"stages\",\"cpu\":0,\"phase\":3,\"reason\":\"mmio\",\"exits\":1");
        assert!(e.contains("malformed") && e.contains("sluice: "), "{e}");
        let e = error_of(
            "sluice: {\"trace\":\"stages\",\"cpu\":0,\"phase\":3,\"reason\":\"mmio\",\"exits\":1,\"ns\":{\"x\":1}}",
        );
        assert!(e.contains("unknown stage `x`"), "{e}");
    }

    #[test]
    fn bad_buckets_and_repeated_summaries_are_errors() {
        let summary = "{\"path\":\"p\",\"phase\":1,\"unit\":\"ns\",\"n\":1,\"min\":1,\"p50\":1,\"p99\":1,\"max\":1,\"mean\":1}";
        let e = error_of(&format!("{summary}\n{{\"path\":\"p\",\"hist\":[[5,5,1]]}}"));
        assert!(e.contains("empty bucket [5, 5)"), "{e}");
        let e = error_of(&format!("{summary}\n{summary}"));
        assert!(e.contains("second summary for path `p`"), "{e}");
    }
}
