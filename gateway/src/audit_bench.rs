//! The audit benchmark behind docs/performance.md (`relais audit bench`, hidden; run by
//! scripts/bench.sh): appends per second through the real `SqlAuditSink` with concurrent
//! writers, then a chain of `fill` records built through the same batched append, walked by
//! `verify`. It refuses to run on a database whose audit trail is not empty.
use crate::domain::audit::{AuditEvent, AuditRecord, RequestContextRecord};
use crate::domain::audit_chain::Checkpoint;
use crate::domain::audit_verify;
use crate::domain::ports::Storage;
use crate::server::Components;
use std::time::{Duration, Instant};

pub struct BenchOptions {
    pub appends: u64,
    pub writers: u64,
    pub fill: u64,
    pub fill_batch: u64,
}

fn record(i: u64) -> AuditRecord {
    AuditRecord {
        at: chrono::Utc::now(),
        event: AuditEvent::TokenIssued {
            account_id: uuid::Uuid::new_v4().to_string(),
            client_id: format!("app-{}", i % 50),
            grant_type: "authorization_code".into(),
            acr: "loa1".into(),
            amr: vec!["pwd".into()],
            auth_time: 1_764_000_000,
            session_id: format!("{:064x}", i),
            idnat: Some(format!("8{:010}", i % 10_000_000_000)),
        },
        context: RequestContextRecord {
            source_ip: Some(format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)),
            user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0".into()),
            correlation_id: Some(format!("00-{:032x}-{:016x}-01", i, i)),
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// Runs the benchmark and prints one line per measure.
pub async fn run(c: &Components, o: &BenchOptions) -> Result<(), Box<dyn std::error::Error>> {
    let store = c.store.clone();
    if store.audit_head().await?.0 != 0 {
        return Err("the audit bench needs a database with an empty audit trail (use a fresh schema)".into());
    }
    // 1. Appends through the sink (group commit, checkpoints every [audit] checkpoint_every).
    let per_writer = (o.appends / o.writers.max(1)).max(1);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..o.writers.max(1) {
        let audit = c.audit.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(per_writer as usize);
            for i in 0..per_writer {
                let t = Instant::now();
                audit.record(record(w * per_writer + i)).await?;
                lat.push(t.elapsed());
            }
            Ok::<_, crate::domain::ports::StoreError>(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    lat.sort();
    println!(
        "appends: {} records, {} concurrent writers, {:.2} s: {:.0} appends/s; latency p50 {:.1} ms, p99 {:.1} ms",
        lat.len(),
        o.writers,
        secs,
        lat.len() as f64 / secs,
        percentile(&lat, 0.5),
        percentile(&lat, 0.99)
    );
    // 2. A long chain through the same batched append the sink uses, checkpointed as it does.
    let every = c.config.audit.checkpoint_every.max(1) as i64;
    let start = Instant::now();
    let mut done = 0u64;
    let fill_batch = o.fill_batch.clamp(1, 2000);
    while done < o.fill {
        let n = fill_batch.min(o.fill - done);
        let batch: Vec<AuditRecord> = (done..done + n).map(record).collect();
        let chained = store.append_audit_batch(&batch).await?;
        for r in chained.iter().filter(|r| r.seq % every == 0) {
            store
                .insert_audit_checkpoint(&Checkpoint::sign(c.keys.as_ref(), r, chrono::Utc::now())?)
                .await?;
        }
        done += n;
    }
    let (head, _) = store.audit_head().await?;
    println!(
        "fill: {} records in batches of {fill_batch} in {:.1} s ({:.0} records/s); chain head {head}",
        o.fill,
        start.elapsed().as_secs_f64(),
        o.fill as f64 / start.elapsed().as_secs_f64()
    );
    // 3. Verify the whole chain.
    let start = Instant::now();
    let report = audit_verify::verify(store.as_ref(), c.keys.as_ref(), None, None).await?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(p) = report.problem {
        return Err(format!("verify found a problem in the bench chain: {p}").into());
    }
    println!(
        "verify: {} records, {} checkpoints in {secs:.1} s ({:.0} records/s)",
        report.records,
        report.checkpoints,
        report.records as f64 / secs
    );
    Ok(())
}
