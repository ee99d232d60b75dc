//! `supportd db copy --from URL --to URL [--force] [--json]`: moves a deployment's data
//! between databases (SQLite → PostgreSQL), then verifies it (see `store::copy`).

use clap::Subcommand;

use supportd::store::{CopyError, Store, TableCopy};

use super::run::redact;
use super::{Failure, EX_CONFIG, EX_DATAERR};

#[derive(Subcommand)]
pub enum DbCommand {
    /// Copy every table of one database into another and verify row counts and checksums
    /// (blobs included). Both are migrated first. Refuses a non-empty target unless --force;
    /// copying again adds only the rows the target lacks.
    Copy {
        /// The database to copy from (sqlite://PATH or postgres://…).
        #[arg(long)]
        from: String,
        /// The database to copy into.
        #[arg(long)]
        to: String,
        /// Copy into a target that holds rows already (rows it has are kept, not replaced).
        #[arg(long)]
        force: bool,
        /// One JSON object per table instead of the table.
        #[arg(long)]
        json: bool,
    },
}

async fn open(url: &str) -> Result<Store, Failure> {
    let store = Store::connect(url).await?;
    store.migrate().await?;
    Ok(store)
}

pub async fn dispatch(command: &DbCommand) -> Result<u8, Failure> {
    let DbCommand::Copy {
        from,
        to,
        force,
        json,
    } = command;
    if from == to {
        return Err(Failure::new(
            EX_CONFIG,
            anyhow::anyhow!("--from and --to name the same database"),
        ));
    }
    let source = open(from).await?;
    let target = open(to).await?;
    let report = match source.copy_to(&target, *force) {
        Ok(r) => r,
        Err(CopyError::Store(e)) => return Err(e.into()),
        Err(e @ CopyError::NotEmpty(_)) => return Err(Failure::new(EX_DATAERR, e.into())),
        Err(e) => return Err(Failure::new(EX_DATAERR, e.into())),
    };
    print(&report, *json);
    let bad: Vec<&TableCopy> = report.iter().filter(|t| !t.verified()).collect();
    if !bad.is_empty() {
        let names: Vec<&str> = bad.iter().map(|t| t.table.as_str()).collect();
        return Err(Failure::new(
            EX_DATAERR,
            anyhow::anyhow!(
                "verification failed for {}: the target differs from the source",
                names.join(", ")
            ),
        ));
    }
    let rows: i64 = report.iter().map(|t| t.target_rows).sum();
    let copied: i64 = report.iter().map(|t| t.copied).sum();
    if !*json {
        outln!(
            "copied {copied} rows from {} to {}; verified {} tables, {rows} rows: counts and checksums match",
            redact(from),
            redact(to),
            report.len()
        );
    }
    Ok(0)
}

fn print(report: &[TableCopy], json: bool) {
    if json {
        for t in report {
            let mut v = serde_json::to_value(t).unwrap_or_default();
            v["verified"] = serde_json::Value::Bool(t.verified());
            outln!("{v}");
        }
        return;
    }
    outln!(
        "{:<20} {:>10} {:>10} {:>10}  {}",
        "TABLE",
        "SOURCE",
        "COPIED",
        "TARGET",
        "CHECKSUM"
    );
    for t in report {
        outln!(
            "{:<20} {:>10} {:>10} {:>10}  {}",
            t.table,
            t.source_rows,
            t.copied,
            t.target_rows,
            if t.verified() {
                format!("ok {}", &t.target_sha256[..16])
            } else {
                "MISMATCH".to_string()
            }
        );
    }
}
