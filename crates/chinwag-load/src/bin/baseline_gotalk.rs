//! Baseline gotalk echo server, raw tokio + chinwag-wire (see `chinwag_load::baselines::gotalk`).
//!
//! Run: `baseline-gotalk --listen 127.0.0.1:0`; prints `listening on ADDR`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = chinwag_load::baselines::listen_arg()?;
    let listener = chinwag_load::baselines::bind_and_announce(addr).await?;
    chinwag_load::baselines::gotalk::serve(listener).await?;
    Ok(())
}
