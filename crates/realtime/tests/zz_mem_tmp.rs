#![allow(clippy::unwrap_used)]
mod common;
use chat_realtime::*;
use common::*;
use std::time::{Duration, Instant};
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn burst() {
    let logs = Logs::capture();
    let p = unique_prefix("burst");
    let cfg = RealtimeConfig {
        socket_queue: 100_000,
        ..config(Some("redis://127.0.0.1:6379".into()), &p)
    };
    let a = Realtime::start(cfg.clone()).await.unwrap();
    let b = Realtime::start(cfg).await.unwrap();
    let c = conv();
    let mut on_b = b.join(c, user(2)).await.unwrap();
    let n = 50_000;
    let t = Instant::now();
    for i in 0..n {
        a.publish(c, &ev(&i.to_string()), Audience::Everyone).await;
    }
    println!("publish {n}: {:?}", t.elapsed());
    let mut got = 0;
    let mut last = -1i64;
    let mut inorder = true;
    while let Some(f) = recv_within(&mut on_b, Duration::from_secs(2)).await {
        let v: serde_json::Value = serde_json::from_str(&f).unwrap();
        let i: i64 = v["message"].as_str().unwrap().parse().unwrap();
        if i <= last {
            inorder = false;
        }
        last = i;
        got += 1;
    }
    println!(
        "received {got}/{n} in order={inorder} after {:?}",
        t.elapsed()
    );
    println!("{}", logs.text());
}
