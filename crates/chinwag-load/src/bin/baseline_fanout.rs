//! Baseline raw fan-out server (see `chinwag_load::baselines::fanout`): `GET /ws?room=R`, every
//! message of a member goes to every member of the room.
//!
//! Run: `baseline-fanout --listen 127.0.0.1:0`; prints `listening on ADDR`.

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = chinwag_load::baselines::listen_arg()?;
    let listener = chinwag_load::baselines::bind_and_announce(addr).await?;
    chinwag_load::baselines::fanout::serve(listener).await?;
    Ok(())
}
