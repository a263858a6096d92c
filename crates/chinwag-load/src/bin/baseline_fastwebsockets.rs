//! Baseline echo server on the raw engine (see `chinwag_load::baselines::fastwebsockets`).
//!
//! Run: `baseline-fastwebsockets --listen 127.0.0.1:0`; prints `listening on ADDR`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = chinwag_load::baselines::listen_arg()?;
    let listener = chinwag_load::baselines::bind_and_announce(addr).await?;
    chinwag_load::baselines::fastwebsockets::serve(listener).await?;
    Ok(())
}
