//! A PostgreSQL database of its own per test: created on the server at 127.0.0.1:5432 (trust
//! auth; `SUPPORTD_TEST_POSTGRES` names another admin URL) and dropped when the test ends,
//! pass or fail. `.ci/run` (scripts/install-test-deps) starts a private cluster when none
//! answers there.

#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use sqlx::Connection as _;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// Admin URLs tried in order: the environment's, then the usual superusers.
fn admin_urls() -> Vec<String> {
    match std::env::var("SUPPORTD_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => vec![url],
        _ => vec![
            "postgres://postgres@127.0.0.1:5432/postgres".into(),
            "postgres://root@127.0.0.1:5432/postgres".into(),
        ],
    }
}

/// Runs `fut` on a runtime of its own, on a thread of its own: callable from a plain test,
/// from inside a `#[tokio::test]` and from a drop.
fn block<T: Send + 'static>(fut: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(fut)
    })
    .join()
    .unwrap_or_else(|e| std::panic::resume_unwind(e))
}

async fn admin() -> (sqlx::PgConnection, String) {
    let mut errors = Vec::new();
    for url in admin_urls() {
        match sqlx::PgConnection::connect(&url).await {
            Ok(c) => return (c, url),
            Err(e) => errors.push(format!("{url}: {e}")),
        }
    }
    panic!(
        "these tests need PostgreSQL on 127.0.0.1:5432 with trust auth (scripts/install-test-deps \
         starts a private cluster): {}",
        errors.join("; ")
    );
}

/// A database that exists for the life of this value.
pub struct PgDb {
    pub name: String,
    /// `postgres://USER@127.0.0.1:5432/NAME`.
    pub url: String,
    admin_url: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let name = format!(
            "supportd_test_{}_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        );
        let create = name.clone();
        let admin_url = block(async move {
            let name = create;
            let (mut c, url) = admin().await;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .execute(&mut c)
                .await
                .expect("create database");
            url
        });
        let base = admin_url
            .rsplit_once('/')
            .map(|(b, _)| b.to_string())
            .expect("admin url has a database");
        PgDb {
            url: format!("{base}/{name}"),
            name,
            admin_url,
        }
    }

    /// Runs one SQL statement as the admin in this database; returns the first column of
    /// the first row as text, if any.
    pub fn sql(&self, statement: &str) -> Option<String> {
        let url = self.url.clone();
        let statement = statement.to_string();
        block(async move {
            use sqlx::Row as _;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            let row = sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
                .fetch_optional(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{statement}: {e}"));
            row.and_then(|r| {
                r.try_get::<Option<String>, _>(0)
                    .ok()
                    .flatten()
                    .or_else(|| r.try_get::<i64, _>(0).ok().map(|v| v.to_string()))
            })
        })
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        block(async move {
            if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut c)
                .await;
            }
        });
    }
}
