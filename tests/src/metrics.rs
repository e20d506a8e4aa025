//! Reading a Herald process's Prometheus `/metrics` in tests.

use std::time::{Duration, Instant};

/// The raw HTTP answer of `GET /metrics` at `addr` (headers and body).
pub async fn scrape(addr: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    Ok(raw)
}

/// Waits until the metrics at `addr` hold `series`; fails after `timeout`.
pub async fn wait_for_series(addr: &str, series: &str, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !scrape(addr).await?.contains(series) {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{series} never appeared at {addr}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
