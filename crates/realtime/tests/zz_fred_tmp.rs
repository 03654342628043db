#![allow(clippy::unwrap_used)]
use fred::prelude::*;
use std::time::{Duration, Instant};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fred_raw() {
    let cfg = Config::from_url("redis://127.0.0.1:6379").unwrap();
    let mode = std::env::var("MODE").unwrap_or_default();
    let t = Duration::from_secs(2);
    let mut b = Builder::from_config(cfg);
    if mode.contains('t') {
        b.with_performance_config(|p| p.default_command_timeout = t);
    }
    if mode.contains('u') {
        b.with_connection_config(|c| {
            c.unresponsive.max_timeout = Some(t * 2);
            c.unresponsive.interval = t / 2;
        });
    }
    if mode.contains('a') {
        b.with_connection_config(|c| c.max_command_attempts = 1);
    }
    if mode.contains('p') {
        b.set_policy(ReconnectPolicy::new_exponential(0, 100, 2000, 2));
    }
    let publ = b.build().unwrap();
    let sub = b
        .with_performance_config(|p| p.broadcast_channel_capacity = 16384)
        .build_subscriber_client()
        .unwrap();
    publ.init().await.unwrap();
    sub.init().await.unwrap();
    sub.subscribe("zzraw").await.unwrap();
    let _: Value = sub.ping(None).await.unwrap();
    let mut rx = sub.message_rx();
    let n = 50_000;
    let reader = tokio::spawn(async move {
        let mut got = 0;
        let mut lagged = 0u64;
        let t = Instant::now();
        while got < n {
            match tokio::time::timeout(Duration::from_secs(3), rx.recv()).await {
                Ok(Ok(_)) => got += 1,
                Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(k))) => lagged += k,
                _ => break,
            }
        }
        (got, lagged, t.elapsed())
    });
    let payload = "x".repeat(150);
    let t = Instant::now();
    for b in 0..(n / 500) {
        let p = publ.pipeline();
        for _ in 0..500 {
            let _: Value = p.publish("zzraw", payload.clone()).await.unwrap();
        }
        let _: Value = p.all().await.unwrap();
        let _ = b;
    }
    println!("published {n} in {:?}", t.elapsed());
    println!("reader: {:?}", reader.await.unwrap());
}
